//! The job definition: what every job of a batch runs (image, host volumes, the runner's fixed
//! environment, size, retries, timeout, the job role), built from a [`DefinitionSpec`] into a
//! plain [`JobDefinition`] that `register` turns into RegisterJobDefinition. Pure.
//!
//! Reuse: the definition's name carries a hash of its [`Content`] (all it is registered with
//! but the name and tags), so an unchanged `[job]` finds its ACTIVE definition by name instead
//! of registering a new revision each run. The name alone is not trusted: a revision is reused
//! only when what AWS Batch describes is that content (someone may have registered another
//! under the name).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use rtb_model::exit::runner;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Where the host's MATLAB root is mounted in the container (read-only).
pub const MATLAB_MOUNT: &str = "/usr/local/MATLAB/from-host";
/// The host's Docker socket: the runner can start peer containers, as on the EC2 engine.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// Every definition's name starts with this; the rest is the spec's hash.
pub const NAME_PREFIX: &str = "run-render-";
/// Hex digits of the spec's SHA-256 in the name: 64 bits, no collision in any lab's lifetime.
const HASH_HEX: usize = 16;
/// AWS Batch kills an attempt at its timeout with no grace. The runner stops the command at
/// `timeout` itself, then uploads the outputs, the log and the result record: the AWS timeout
/// comes this much later, so that upload is not cut off.
pub const TIMEOUT_MARGIN: Duration = Duration::from_secs(10 * 60);
/// AWS Batch's bounds: 1..=10 attempts, a timeout of at least 60 s.
pub const MAX_ATTEMPTS: u32 = 10;
const MIN_TIMEOUT_SECS: u64 = 60;

/// What a batch's jobs share, as the client knows it. Its canonical JSON is hashed into the
/// definition's name: every field that changes what runs is here, nothing else is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DefinitionSpec {
    /// The rtb-support image, on the AMI or in a registry.
    pub image: String,
    /// The host's MATLAB root, mounted read-only at [`MATLAB_MOUNT`].
    pub matlab_root: Option<PathBuf>,
    /// (host path, container path, read only), mounted as given.
    pub volumes: Vec<(PathBuf, PathBuf, bool)>,
    /// The runner's fixed environment (per-row settings go in the manifest or the overrides).
    pub env: BTreeMap<String, String>,
    /// Extra attempts after the first.
    pub retries: u32,
    /// Retry the job's own errors too (a MATLAB error, a failed copy), not only the
    /// infrastructure's.
    pub retry_on_job_error: bool,
    /// The runner's own timeout; the attempt's is this plus [`TIMEOUT_MARGIN`].
    pub timeout: Option<Duration>,
    pub vcpus: u32,
    pub memory_mib: u32,
    /// The IAM role the jobs' containers act as (`aws-batch setup` makes `<queue>-job`).
    pub job_role: Option<String>,
}

/// A host volume and where it is mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Volume {
    pub name: String,
    pub source_path: String,
    pub container_path: String,
    /// Always sent: moto fails a job whose mount point has no `readOnly`.
    pub read_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Action {
    Retry,
    Exit,
}

/// What an `evaluateOnExit` rule matches. AWS allows a trailing `*` as the only wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum OnExit {
    StatusReason(String),
    Reason(String),
    ExitCode(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExitRule {
    pub on: OnExit,
    pub action: Action,
}

/// The RegisterJobDefinition request, as plain values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobDefinition {
    pub name: String,
    pub image: String,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub environment: BTreeMap<String, String>,
    pub volumes: Vec<Volume>,
    pub attempts: u32,
    /// First match wins; AWS allows at most 5.
    pub evaluate_on_exit: Vec<ExitRule>,
    pub attempt_duration_secs: Option<u64>,
    pub job_role: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// A spec AWS Batch would refuse, named so the user can fix the batch file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionError {
    #[error("retries = {0}: AWS Batch allows at most {max} (1 + retries attempts)", max = MAX_ATTEMPTS - 1)]
    TooManyRetries(u32),
    #[error("volume '{0}': host and container paths must be absolute")]
    RelativePath(String),
    #[error("volume '{0}' is mounted twice in the container")]
    DuplicateMount(String),
    #[error("the image is empty")]
    NoImage,
    #[error("vcpus and memory-mib must be at least 1")]
    NoSize,
}

/// The tags of what run-render makes on AWS Batch, and the tool's value.
pub const TOOL_TAG: &str = "rtb:tool";
pub const TOOL: &str = "run-render";
pub const OWNER_TAG: &str = "rtb:owner";
pub const BATCH_TAG: &str = "rtb:batch";
/// A job's run (`r<UTC time>`): which submission of the batch it belongs to.
pub const RUN_TAG: &str = "rtb:run";

/// The tags every resource of a batch carries.
pub fn tags(owner: &str, batch: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TOOL_TAG.to_string(), TOOL.to_string()),
        (OWNER_TAG.to_string(), owner.to_string()),
        (BATCH_TAG.to_string(), batch.to_string()),
    ])
}

impl DefinitionSpec {
    /// The request to register, tagged for `owner` and the batch that registers it, and named
    /// after its content (see [`Content::name`]; tags are not content: a later batch with the
    /// same spec reuses the definition).
    pub fn build(&self, owner: &str, batch: &str) -> Result<JobDefinition, DefinitionError> {
        if self.image.trim().is_empty() {
            return Err(DefinitionError::NoImage);
        }
        if self.vcpus == 0 || self.memory_mib == 0 {
            return Err(DefinitionError::NoSize);
        }
        if self.retries >= MAX_ATTEMPTS {
            return Err(DefinitionError::TooManyRetries(self.retries));
        }
        let mut volumes = Vec::new();
        if let Some(root) = &self.matlab_root {
            volumes.push(volume("matlab", root, MATLAB_MOUNT.as_ref(), true)?);
        }
        volumes.push(volume(
            "docker-socket",
            DOCKER_SOCKET.as_ref(),
            DOCKER_SOCKET.as_ref(),
            false,
        )?);
        for (i, (host, container, read_only)) in self.volumes.iter().enumerate() {
            volumes.push(volume(&format!("volume-{i}"), host, container, *read_only)?);
        }
        let mut seen = std::collections::BTreeSet::new();
        for v in &volumes {
            if !seen.insert(v.container_path.trim_end_matches('/')) {
                return Err(DefinitionError::DuplicateMount(v.container_path.clone()));
            }
        }
        let mut def = JobDefinition {
            name: String::new(),
            image: self.image.clone(),
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            environment: self.env.clone(),
            volumes,
            attempts: 1 + self.retries,
            evaluate_on_exit: exit_rules(self.retry_on_job_error),
            attempt_duration_secs: self
                .timeout
                .map(|t| (t + TIMEOUT_MARGIN).as_secs().max(MIN_TIMEOUT_SECS)),
            job_role: self.job_role.clone(),
            tags: tags(owner, batch),
        };
        def.name = def.content().name();
        Ok(def)
    }
}

/// What a registered definition runs: everything RegisterJobDefinition is given but the name
/// and the tags, in a canonical order. Two definitions with the same content run the same
/// jobs, so one may stand for the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Content {
    pub image: String,
    /// The container's command: empty, so the image's ENTRYPOINT (the runner) runs.
    pub command: Vec<String>,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub environment: BTreeMap<String, String>,
    /// (host path, container path, read only), sorted.
    pub mounts: Vec<(String, String, bool)>,
    pub attempts: u32,
    /// (what is matched, its pattern, RETRY or EXIT), in order.
    pub evaluate_on_exit: Vec<(String, String, String)>,
    pub attempt_duration_secs: Option<u64>,
    pub job_role: Option<String>,
    /// ECS starts the container under an init process (`docker run --init`), which passes a
    /// stop on to the runner even before the runner listens for it: as PID 1 it would ignore
    /// a SIGTERM that came that early, and the stop would wait out its 30 s.
    pub init_process: bool,
}

impl Content {
    /// SHA-256 of the canonical JSON (maps sorted, lists in their order), in hex.
    pub fn hash(&self) -> String {
        // Serializing plain strings, numbers and sorted maps cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        Sha256::digest(&json)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The definition's name: [`NAME_PREFIX`] and the first digits of [`Self::hash`], so a
    /// change of anything registered (a newer client's margin or retry rules included) gets
    /// another name.
    pub fn name(&self) -> String {
        format!("{NAME_PREFIX}{}", &self.hash()[..HASH_HEX])
    }

    /// The first part in which `other` differs, for the user ("the image", ...).
    pub fn first_difference(&self, other: &Content) -> Option<&'static str> {
        if self.image != other.image {
            Some("the image")
        } else if self.command != other.command {
            Some("the command")
        } else if (self.vcpus, self.memory_mib) != (other.vcpus, other.memory_mib) {
            Some("the size")
        } else if self.environment != other.environment {
            Some("the environment")
        } else if self.mounts != other.mounts {
            Some("the volumes")
        } else if (self.attempts, &self.evaluate_on_exit)
            != (other.attempts, &other.evaluate_on_exit)
        {
            Some("the retry strategy")
        } else if self.attempt_duration_secs != other.attempt_duration_secs {
            Some("the timeout")
        } else if self.job_role != other.job_role {
            Some("the job role")
        } else if self.init_process != other.init_process {
            Some("the init process")
        } else {
            None
        }
    }
}

impl JobDefinition {
    /// What it runs, as [`Content`].
    pub fn content(&self) -> Content {
        let mut mounts: Vec<(String, String, bool)> = self
            .volumes
            .iter()
            .map(|v| (v.source_path.clone(), v.container_path.clone(), v.read_only))
            .collect();
        mounts.sort();
        Content {
            image: self.image.clone(),
            command: Vec::new(),
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            environment: self.environment.clone(),
            mounts,
            attempts: self.attempts,
            evaluate_on_exit: self
                .evaluate_on_exit
                .iter()
                .map(|r| {
                    let (on, pattern) = match &r.on {
                        OnExit::StatusReason(p) => ("onStatusReason", p),
                        OnExit::Reason(p) => ("onReason", p),
                        OnExit::ExitCode(p) => ("onExitCode", p),
                    };
                    let action = match r.action {
                        Action::Retry => "RETRY",
                        Action::Exit => "EXIT",
                    };
                    (on.to_string(), pattern.clone(), action.to_string())
                })
                .collect(),
            attempt_duration_secs: self.attempt_duration_secs,
            job_role: self.job_role.clone(),
            init_process: true,
        }
    }
}

fn volume(
    name: &str,
    host: &std::path::Path,
    container: &std::path::Path,
    read_only: bool,
) -> Result<Volume, DefinitionError> {
    if !host.is_absolute() || !container.is_absolute() {
        return Err(DefinitionError::RelativePath(format!(
            "{}:{}",
            host.display(),
            container.display()
        )));
    }
    Ok(Volume {
        name: name.to_string(),
        source_path: host.display().to_string(),
        container_path: container.display().to_string(),
        read_only,
    })
}

/// The retry policy, as the EC2 engine decides it: the infrastructure failing under a job
/// (the instance terminated, a Spot reclaim: both read "Host EC2 (instance i-...) terminated.")
/// is retried; the job's own failures end it, unless `retry_on_job_error`, and even then not
/// the runner's codes that no retry can fix (bad settings, an unreadable manifest row).
/// Rules are tried in order; at most 5 (AWS's limit).
pub fn exit_rules(retry_on_job_error: bool) -> Vec<ExitRule> {
    let rule = |on, action| ExitRule { on, action };
    let mut rules = vec![rule(
        OnExit::StatusReason("Host EC2*".into()),
        Action::Retry,
    )];
    if retry_on_job_error {
        for code in [runner::BAD_SETTINGS, runner::BAD_MANIFEST] {
            rules.push(rule(OnExit::ExitCode(code.to_string()), Action::Exit));
        }
        rules.push(rule(OnExit::ExitCode("*".into()), Action::Retry));
    } else {
        rules.push(rule(OnExit::ExitCode("*".into()), Action::Exit));
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DefinitionSpec {
        DefinitionSpec {
            image: "rtb-support:latest".into(),
            matlab_root: Some("/usr/local/MATLAB/R2024b".into()),
            volumes: vec![("/data/scenes".into(), "/scenes".into(), true)],
            env: BTreeMap::from([("MATLAB_EXECUTABLE".to_string(), "matlab".to_string())]),
            retries: 2,
            retry_on_job_error: false,
            timeout: Some(Duration::from_secs(3600)),
            vcpus: 4,
            memory_mib: 14_336,
            job_role: Some("arn:aws:iam::123456789012:role/q-job".into()),
        }
    }

    fn name(s: &DefinitionSpec) -> String {
        s.build("o", "b").unwrap().name
    }

    #[test]
    fn the_name_changes_with_every_field_and_only_with_them() {
        let base = spec();
        assert_eq!(name(&base), name(&spec()));
        assert!(name(&base).starts_with(NAME_PREFIX));
        assert_eq!(name(&base).len(), NAME_PREFIX.len() + HASH_HEX);
        type Change = Box<dyn Fn(&mut DefinitionSpec)>;
        let variants: Vec<Change> = vec![
            Box::new(|s| s.image.push('x')),
            Box::new(|s| s.matlab_root = None),
            Box::new(|s| s.volumes[0].2 = false),
            Box::new(|s| {
                s.env.insert("A".into(), "b".into());
            }),
            Box::new(|s| s.retries = 3),
            Box::new(|s| s.retry_on_job_error = true),
            Box::new(|s| s.timeout = None),
            Box::new(|s| s.vcpus = 2),
            Box::new(|s| s.memory_mib += 1),
            Box::new(|s| s.job_role = None),
        ];
        for (i, change) in variants.iter().enumerate() {
            let mut s = spec();
            change(&mut s);
            assert_ne!(name(&s), name(&base), "variant {i}");
            let (a, b) = (base.build("o", "b").unwrap(), s.build("o", "b").unwrap());
            assert!(
                a.content().first_difference(&b.content()).is_some(),
                "variant {i}"
            );
        }
        // Tags are not part of it.
        assert_eq!(
            base.build("a", "b1").unwrap().name,
            base.build("c", "b2").unwrap().name
        );
    }

    #[test]
    fn volumes_are_matlab_read_only_the_socket_then_each_volume() {
        let d = spec().build("ann", "b1").unwrap();
        let got: Vec<(&str, &str, bool)> = d
            .volumes
            .iter()
            .map(|v| {
                (
                    v.source_path.as_str(),
                    v.container_path.as_str(),
                    v.read_only,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("/usr/local/MATLAB/R2024b", MATLAB_MOUNT, true),
                (DOCKER_SOCKET, DOCKER_SOCKET, false),
                ("/data/scenes", "/scenes", true),
            ]
        );
        assert_eq!(d.tags["rtb:owner"], "ann");
        assert_eq!(d.tags["rtb:batch"], "b1");
        assert_eq!(d.tags["rtb:tool"], "run-render");
    }

    #[test]
    fn attempts_timeout_and_exit_rules() {
        let d = spec().build("o", "b").unwrap();
        assert_eq!(d.attempts, 3);
        assert_eq!(d.attempt_duration_secs, Some(3600 + 600));
        assert_eq!(
            d.evaluate_on_exit,
            [
                ExitRule {
                    on: OnExit::StatusReason("Host EC2*".into()),
                    action: Action::Retry
                },
                ExitRule {
                    on: OnExit::ExitCode("*".into()),
                    action: Action::Exit
                },
            ]
        );
        let mut s = spec();
        s.retry_on_job_error = true;
        s.timeout = Some(Duration::from_secs(1));
        let d = s.build("o", "b").unwrap();
        assert_eq!(d.attempt_duration_secs, Some(601));
        let actions: Vec<(String, Action)> = d
            .evaluate_on_exit
            .iter()
            .map(|r| (format!("{:?}", r.on), r.action))
            .collect();
        assert_eq!(
            actions,
            [
                ("StatusReason(\"Host EC2*\")".to_string(), Action::Retry),
                ("ExitCode(\"2\")".to_string(), Action::Exit),
                ("ExitCode(\"7\")".to_string(), Action::Exit),
                ("ExitCode(\"*\")".to_string(), Action::Retry),
            ]
        );
        assert!(d.evaluate_on_exit.len() <= 5);
    }

    #[test]
    fn specs_aws_would_refuse_are_named() {
        let mut s = spec();
        s.retries = 10;
        assert_eq!(s.build("o", "b"), Err(DefinitionError::TooManyRetries(10)));
        let mut s = spec();
        s.volumes.push(("data".into(), "/x".into(), false));
        assert!(matches!(
            s.build("o", "b"),
            Err(DefinitionError::RelativePath(_))
        ));
        let mut s = spec();
        s.volumes.push(("/a".into(), "/scenes/".into(), false));
        assert!(matches!(
            s.build("o", "b"),
            Err(DefinitionError::DuplicateMount(_))
        ));
        let mut s = spec();
        s.vcpus = 0;
        assert_eq!(s.build("o", "b"), Err(DefinitionError::NoSize));
    }
}
