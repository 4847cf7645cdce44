//! Raw arguments checked into a [`Plan`]: everything a launch needs, decided before any AWS
//! call, so bad input is refused before money is spent. The runner's settings (the container's
//! environment) are written in [`runner`].

mod runner;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use rtb_model::{contract, JobRecords, S3Url};

use crate::cli::RunArgs as Args;

/// The tag every instance of ours carries, and which the client's IAM policy requires.
pub const TOOL_TAG: (&str, &str) = ("rtb:tool", "run-render");
pub const JOB_TAG: &str = "rtb:job-id";
pub const OWNER_TAG: &str = "rtb:owner";
pub const DEADLINE_TAG: &str = "rtb:deadline";
pub const RECORDS_TAG: &str = "rtb:records";
pub const BATCH_TAG: &str = "rtb:batch";
/// A pool instance's batch run. Its tags cannot change after launch, so it names no job:
/// `rtb:records` is then the run's records folder, where the jobs it runs are written down.
pub const RUN_TAG: &str = "rtb:run";
/// The job a pool instance was launched for (its first; informative only).
pub const LAUNCH_JOB_TAG: &str = "rtb:launch-job";

#[derive(Debug, thiserror::Error)]
#[error("{flag}: {problem}")]
pub struct PlanError {
    pub flag: &'static str,
    pub problem: String,
}

fn bad(flag: &'static str, problem: impl Into<String>) -> PlanError {
    PlanError {
        flag,
        problem: problem.into(),
    }
}

/// What runs on the instance.
#[derive(Debug, Clone)]
pub enum Work {
    /// The rtb-support container with the runner's environment.
    Container(Container),
    /// A raw shell command (the original client's generic mode).
    Shell(String),
}

#[derive(Debug, Clone)]
pub struct Container {
    pub image: String,
    /// The runner's settings, in a stable order.
    pub env: Vec<(String, String)>,
    /// (instance path, container path, read-only)
    pub volumes: Vec<(String, String, bool)>,
    /// Where the runner writes its log chunks and result record.
    pub records: Option<JobRecords>,
}

/// Where a job's AMI comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmiFrom {
    /// The job's own `--ami`: the EC2 engine launches it, so it is required.
    Job,
    /// The AWS Batch compute environment, which launches the instances: `--ami` may be left
    /// out (when given, preflight checks it against the compute environment).
    ComputeEnvironment,
}

/// What is launched.
#[derive(Debug, Clone)]
pub struct Launch {
    pub ami: String,
    /// Tried in order while EC2 answers "no capacity".
    pub instance_types: Vec<String>,
    pub disk_gb: Option<u32>,
    pub subnet: Option<String>,
    pub security_groups: Vec<String>,
    pub iam_profile: String,
    pub tags: Vec<(String, String)>,
    /// Idempotency token for RunInstances (see [`Launch::token`]).
    pub client_token: String,
    /// Ask for a spot instance (batches: `spot = true`), terminated when reclaimed.
    pub spot: bool,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub job_id: String,
    pub launch: Launch,
    pub work: Work,
    pub input: Option<S3Url>,
    pub output: Option<S3Url>,
    pub timeout: Option<Duration>,
    /// When the instance stops itself, whatever happens to this client: timeout + margin.
    pub deadline: Option<SystemTime>,
    pub agent_timeout: Duration,
    /// How long a run of failed AWS calls may last before the client gives up (exit 69).
    pub api_patience: Duration,
    pub keep: bool,
    /// Leave once the job has started; the instance ends itself after it.
    pub detach: bool,
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    /// The batch this job belongs to (its instances carry the rtb:batch tag).
    pub batch: Option<String>,
}

impl Plan {
    /// The job's records (log chunks, result record) at `records` instead: the runner's
    /// LOG_BUCKET and the instance's rtb:records tag follow.
    pub fn with_records(mut self, records: JobRecords) -> Plan {
        let root = records.root().to_string();
        if let Work::Container(c) = &mut self.work {
            c.env.retain(|(k, _)| k != contract::LOG_BUCKET.name);
            c.env
                .push((contract::LOG_BUCKET.name.to_string(), root.clone()));
            c.records = Some(records);
        }
        self.launch.tags.retain(|(k, _)| k != RECORDS_TAG);
        if root.chars().count() <= 256 {
            self.launch.tags.push((RECORDS_TAG.to_string(), root));
        }
        self
    }

    pub fn work_records(&self) -> Option<&JobRecords> {
        match &self.work {
            Work::Container(c) => c.records.as_ref(),
            Work::Shell(_) => None,
        }
    }

    /// This job as one of batch `name`'s: the instance it launches carries the batch's tag.
    pub fn in_batch(mut self, name: &str) -> Plan {
        self.launch.tags.retain(|(k, _)| k != BATCH_TAG);
        self.launch
            .tags
            .push((BATCH_TAG.to_string(), name.to_string()));
        self.batch = Some(name.to_string());
        self.log_every(runner::LogPace::Batch)
    }

    /// This plan's launch as a batch pool's instance, which runs one job after another: its
    /// tags (set once, at launch) name the batch run and its records folder, not a job.
    pub fn for_pool(mut self, run: &str, records: &rtb_model::RunRecords) -> Plan {
        let tags = &mut self.launch.tags;
        tags.retain(|(k, _)| {
            ![JOB_TAG, RECORDS_TAG, RUN_TAG, LAUNCH_JOB_TAG].contains(&k.as_str())
        });
        tags.push((LAUNCH_JOB_TAG.to_string(), self.job_id.clone()));
        tags.push((RUN_TAG.to_string(), run.to_string()));
        let root = records.root().to_string();
        if root.chars().count() <= 256 {
            tags.push((RECORDS_TAG.to_string(), root));
        }
        self
    }

    pub fn from_args(args: Args, now: SystemTime) -> Result<Plan, PlanError> {
        Plan::from_args_for(args, now, AmiFrom::Job)
    }

    /// As [`from_args`](Self::from_args), with the AMI from `ami`: on AWS Batch the compute
    /// environment has it, so a job need not name one (`launch.ami` is then empty).
    pub fn from_args_for(args: Args, now: SystemTime, ami: AmiFrom) -> Result<Plan, PlanError> {
        for (flag, value) in text_values(&args) {
            if value.contains('\0') {
                return Err(bad(
                    flag,
                    "contains a NUL byte, which no shell or API can carry",
                ));
            }
        }
        let ami = match (args.job.launch.ami.clone(), ami) {
            (Some(given), _) => {
                check_ami(&given)?;
                given
            }
            (None, AmiFrom::Job) => {
                return Err(bad(
                    "--ami",
                    "is required (the private AMI to launch, ami-...)",
                ))
            }
            (None, AmiFrom::ComputeEnvironment) => String::new(),
        };
        let instance_types: Vec<String> = args
            .job
            .launch
            .instance_type
            .split(',')
            .map(|t| t.trim().to_string())
            .collect();
        for t in &instance_types {
            check_instance_type(t)?;
        }
        if let Some(gb) = args.job.launch.disk_gb {
            if !(8..=16384).contains(&gb) {
                return Err(bad("--disk-gb", format!("{gb} is outside 8..16384 GiB")));
            }
        }
        let job_id = match args.job.launch.job_id {
            Some(id) => check_job_id(&id)?,
            None => new_job_id(now),
        };
        let timeout = parse_timeout(&args.job.limits.timeout)?;
        let agent_timeout = parse_duration("--agent-timeout", &args.job.limits.agent_timeout, DAY)?;
        let api_patience = parse_duration("--api-patience", &args.job.limits.api_patience, DAY)?;
        if api_patience < Duration::from_secs(1) {
            return Err(bad("--api-patience", "must be at least 1s"));
        }
        let input = parse_s3("--input", &args.job.work.input)?;
        let output = parse_s3("--output", &args.job.work.output)?;

        if args.job.work.shell.is_some() {
            // A typed container flag with --shell is a mistake: refuse it rather than drop it.
            // (The same settings from the environment are simply not used.)
            if let Some((_, flag)) = crate::cli::CONTAINER_FLAGS
                .iter()
                .find(|(field, _)| args.explicit.iter().any(|e| e == field))
            {
                return Err(bad(
                    "--shell",
                    format!("runs a raw shell command; {flag} is for container jobs and cannot be used with it"),
                ));
            }
        }
        let work = match (args.job.work.command, args.job.work.shell) {
            (Some(_), Some(_)) => return Err(bad("--shell", "cannot be combined with --command")),
            (None, None) => {
                return Err(bad(
                    "--command",
                    "is required (the MATLAB code to run), or use --shell for a raw shell command",
                ))
            }
            (None, Some(shell)) if shell.trim().is_empty() => {
                return Err(bad("--shell", "is empty"))
            }
            (None, Some(shell)) => Work::Shell(shell),
            (Some(command), None) if command.trim().is_empty() => {
                return Err(bad("--command", "is empty"))
            }
            (Some(command), None) => {
                let checkpoint_every =
                    runner::checkpoint_every(args.job.work.checkpoint_every.as_deref(), &output)?;
                let given = runner::RunnerSettings {
                    command,
                    toolboxes: args.job.work.toolboxes,
                    startup: args.job.work.startup,
                    interpreter: args.job.work.interpreter,
                    input: input.clone(),
                    output: output.clone(),
                    matlab_root: args.job.work.matlab_root.is_some(),
                    timeout,
                    checkpoint_every,
                    extra: args.job.work.env,
                };
                let env = given.env(&job_id)?;
                let mut volumes = Vec::new();
                if let Some(root) = &args.job.work.matlab_root {
                    volumes.push((
                        path_text("--matlab-root", root)?,
                        contract::MATLAB_MOUNT_POINT.to_string(),
                        true,
                    ));
                }
                for v in &args.job.work.volumes {
                    volumes.push(parse_volume(v)?);
                }
                if args.job.work.image.trim().is_empty()
                    || args.job.work.image.chars().any(char::is_whitespace)
                {
                    return Err(bad(
                        "--image",
                        format!("'{}' is not an image reference", args.job.work.image),
                    ));
                }
                Work::Container(Container {
                    image: args.job.work.image,
                    env,
                    volumes,
                    records: output
                        .as_ref()
                        .map(|o| JobRecords::under_output(o, &job_id)),
                })
            }
        };

        let margin = parse_duration(
            "--deadline-margin",
            &args.job.limits.deadline_margin,
            7 * DAY,
        )?;
        // Container settings that came from the environment play no part in a shell run.
        let (input, output) = match work {
            Work::Shell(_) => (None, None),
            Work::Container(_) => (input, output),
        };
        // Both are bounded above, so the sum is a real time.
        let deadline = timeout.and_then(|t| now.checked_add(t + margin));
        let records = match &work {
            Work::Container(c) => c.records.as_ref().map(|r| r.root().to_string()),
            Work::Shell(_) => None,
        };
        let tags = tags(
            &job_id,
            args.job.launch.name.as_deref(),
            &args.job.launch.tags,
            deadline,
            records.as_deref(),
        )?;
        if args.job.launch.iam_profile.trim().is_empty() {
            return Err(bad(
                "--iam-profile",
                "is empty; the instance needs a profile for SSM",
            ));
        }
        Ok(Plan {
            launch: Launch {
                ami,
                instance_types,
                disk_gb: args.job.launch.disk_gb,
                subnet: args.job.launch.subnet,
                security_groups: args.job.launch.security_groups,
                iam_profile: args.job.launch.iam_profile,
                tags,
                client_token: client_token(&job_id, now),
                spot: false,
            },
            job_id,
            work,
            input,
            output,
            timeout,
            deadline,
            agent_timeout,
            api_patience,
            keep: args.job.limits.keep,
            detach: args.detach,
            region: args.aws.region,
            profile: args.aws.profile,
            endpoint_url: args.aws.endpoint_url,
            batch: None,
        }
        .log_every(match args.detach {
            true => runner::LogPace::Detached,
            false => runner::LogPace::Followed,
        }))
    }
}

impl Launch {
    /// The token for the launch of `instance_types[variant]`: a retried request reuses it, a
    /// different instance type gets its own (EC2 refuses one token with other parameters).
    pub fn token(&self, variant: usize) -> String {
        let suffix = format!("-{variant}");
        let keep = 64usize.saturating_sub(suffix.len());
        format!(
            "{}{suffix}",
            &self.client_token[..self.client_token.len().min(keep)]
        )
    }
}

fn text_values(args: &Args) -> Vec<(&'static str, &str)> {
    let mut v: Vec<(&'static str, &str)> = vec![("--image", &args.job.work.image)];
    for (flag, value) in [
        ("--command", &args.job.work.command),
        ("--toolboxes", &args.job.work.toolboxes),
        ("--startup", &args.job.work.startup),
        ("--shell", &args.job.work.shell),
        ("--interpreter", &args.job.work.interpreter),
        ("--name", &args.job.launch.name),
    ] {
        if let Some(value) = value {
            v.push((flag, value));
        }
    }
    v.extend(args.job.work.env.iter().map(|e| ("--env", e.as_str())));
    v.extend(
        args.job
            .work
            .volumes
            .iter()
            .map(|e| ("--volume", e.as_str())),
    );
    v.extend(args.job.launch.tags.iter().map(|e| ("--tag", e.as_str())));
    v
}

fn check_ami(ami: &str) -> Result<(), PlanError> {
    let ok = ami
        .strip_prefix("ami-")
        .is_some_and(|h| (8..=17).contains(&h.len()) && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(bad(
            "--ami",
            format!("'{ami}' is not an AMI id (ami- and 8 or 17 hex digits)"),
        ))
    }
}

fn check_instance_type(t: &str) -> Result<(), PlanError> {
    let ok = t.split_once('.').is_some_and(|(family, size)| {
        !family.is_empty()
            && !size.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    });
    if ok {
        Ok(())
    } else {
        Err(bad(
            "--instance-type",
            format!("'{t}' is not an instance type like m6i.large"),
        ))
    }
}

fn check_job_id(id: &str) -> Result<String, PlanError> {
    rtb_model::job_id::check(id)
        .map(|()| id.to_string())
        .map_err(|e| bad("--job-id", e))
}

/// RunInstances' idempotency token: one per run of the client, so the SDK's retries of one
/// launch never start two instances, and a re-run of the same job id is a new launch.
fn client_token(job_id: &str, now: SystemTime) -> String {
    let nanos = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{job_id}-{:x}", nanos ^ u128::from(std::process::id()))
        .chars()
        .take(64)
        .collect()
}

/// `rr-20261124-053012-1a2b`: sortable by time, unique enough for one lab's jobs.
pub fn new_job_id(now: SystemTime) -> String {
    let stamp = humantime::format_rfc3339_seconds(now).to_string();
    let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
    let nanos = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let salt = (nanos ^ std::process::id().rotate_left(16)) & 0xffff;
    format!("rr-{}-{}-{salt:04x}", &digits[..8], &digits[8..14])
}

const DAY: Duration = Duration::from_secs(24 * 3600);
/// The longest --timeout: a year is past any render, and keeps every time computed from it
/// a real time.
const MAX_TIMEOUT: Duration = Duration::from_secs(366 * 24 * 3600);

fn parse_duration(flag: &'static str, value: &str, max: Duration) -> Result<Duration, PlanError> {
    let d = humantime::parse_duration(value.trim()).map_err(|e| {
        bad(
            flag,
            format!("'{value}' is not a duration ({e}); e.g. 90s, 10m, 6h"),
        )
    })?;
    if d > max {
        return Err(bad(
            flag,
            format!(
                "'{value}' is longer than the most this flag takes ({})",
                humantime::format_duration(max)
            ),
        ));
    }
    Ok(d)
}

fn parse_timeout(value: &str) -> Result<Option<Duration>, PlanError> {
    match value.trim() {
        "none" | "off" => Ok(None),
        v => {
            let t = humantime::parse_duration(v).map_err(|e| {
                bad(
                    "--timeout",
                    format!("'{v}' is not a duration ({e}); e.g. 6h, 90m, or none"),
                )
            })?;
            if t.is_zero() {
                Err(bad("--timeout", "must be longer than zero (or none)"))
            } else if t > MAX_TIMEOUT {
                Err(bad(
                    "--timeout",
                    format!("'{v}' is longer than a year; use none for no limit"),
                ))
            } else {
                Ok(Some(t))
            }
        }
    }
}

fn parse_s3(flag: &'static str, value: &Option<String>) -> Result<Option<S3Url>, PlanError> {
    value
        .as_deref()
        .map(|v| v.parse::<S3Url>().map_err(|e| bad(flag, e.to_string())))
        .transpose()
}

fn path_text(flag: &'static str, p: &std::path::Path) -> Result<String, PlanError> {
    let text = p
        .to_str()
        .ok_or_else(|| bad(flag, "is not valid UTF-8"))?
        .to_string();
    if !text.starts_with('/') {
        return Err(bad(
            flag,
            format!("'{text}' must be an absolute path on the instance"),
        ));
    }
    Ok(text)
}

fn parse_volume(v: &str) -> Result<(String, String, bool), PlanError> {
    let parts: Vec<&str> = v.split(':').collect();
    let (host, ctr, ro) = match parts.as_slice() {
        [h, c] => (*h, *c, false),
        [h, c, "ro"] => (*h, *c, true),
        [h, c, "rw"] => (*h, *c, false),
        _ => return Err(bad("--volume", format!("'{v}' is not HOST:CONTAINER[:ro]"))),
    };
    let host = path_text("--volume", &PathBuf::from(host))?;
    let ctr = path_text("--volume", &PathBuf::from(ctr))?;
    Ok((host, ctr, ro))
}

/// Who launches: `$USER` (or `$LOGNAME`), the `rtb:owner` tag `list` and `cleanup` filter on.
pub fn owner() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn tags(
    job_id: &str,
    name: Option<&str>,
    extra: &[String],
    deadline: Option<SystemTime>,
    records: Option<&str>,
) -> Result<Vec<(String, String)>, PlanError> {
    let owner = owner();
    let mut tags = vec![
        (
            "Name".to_string(),
            name.map_or_else(|| format!("run-render-{job_id}"), str::to_string),
        ),
        (TOOL_TAG.0.to_string(), TOOL_TAG.1.to_string()),
        (JOB_TAG.to_string(), job_id.to_string()),
        (OWNER_TAG.to_string(), owner),
    ];
    if let Some(d) = deadline {
        tags.push((
            DEADLINE_TAG.to_string(),
            humantime::format_rfc3339_seconds(d).to_string(),
        ));
    }
    // Where the job's log and result are, so `status`, `logs` and `cleanup` find them from
    // the instance alone. A tag value holds 256 characters; a longer URL is left out (the
    // job is then found with --output).
    if let Some(r) = records.filter(|r| r.chars().count() <= 256) {
        tags.push((RECORDS_TAG.to_string(), r.to_string()));
    }
    for t in extra {
        let (k, v) = t
            .split_once('=')
            .ok_or_else(|| bad("--tag", format!("'{t}' is not KEY=VALUE")))?;
        if k.is_empty() || k.len() > 128 || v.len() > 256 {
            return Err(bad(
                "--tag",
                format!("'{t}': keys are 1-128 characters, values up to 256"),
            ));
        }
        if k.starts_with("aws:") || k.starts_with("rtb:") || k == "Name" {
            return Err(bad(
                "--tag",
                format!(
                    "'{k}' is reserved (aws:, rtb: and Name are set by run-render; use --name)"
                ),
            ));
        }
        tags.push((k.to_string(), v.to_string()));
    }
    Ok(tags)
}

#[cfg(test)]
mod tests;
