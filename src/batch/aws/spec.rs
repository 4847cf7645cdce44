//! The job definition a batch's rows share, from their plans, and the fixed environment its
//! jobs get. Pure.
//!
//! AWS Batch runs every row of a submission with one job definition, so everything a
//! definition is built from must be the same in every row; the one exception is the timeout,
//! which each runner enforces itself (its row's `RTB_TIMEOUT`): the definition's is the
//! largest, the backstop that must never cut a row short.

use std::collections::BTreeMap;
use std::time::Duration;

use super::super::file::Settings;
use super::super::jobs::{BatchJob, Policy};
use crate::engine::aws_batch::{sizes, DefinitionSpec};

/// The test-only setting that gives AWS Batch jobs credentials (`KEYID:SECRET`): honoured only
/// with a custom endpoint, where no job role exists (a local emulator). On AWS a job's access
/// comes from its job role, and no credential is ever put in a job definition.
pub const TEST_JOB_CREDENTIALS: &str = "RUN_RENDER_TEST_JOB_CREDENTIALS";

/// Why the rows cannot share one definition, or the definition cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("row {row}: the aws-batch engine runs container jobs only (--command, not --shell)")]
    NotContainer { row: usize },
    #[error("row {row}: {what} differs from row {first}'s; AWS Batch runs every row of a batch with one job definition (image, volumes, matlab-root, the size, the endpoint): split the batch, or make them the same")]
    Differs {
        row: usize,
        first: usize,
        what: &'static str,
    },
    #[error("row {row}: {problem}")]
    Size { row: usize, problem: String },
    #[error("{TEST_JOB_CREDENTIALS}: {0}")]
    Credentials(String),
}

/// The job definition every row of `run` shares, with the largest timeout of them (none if a
/// row has none). `var` reads the client's environment.
pub fn definition_spec(
    jobs: &[BatchJob],
    run: &[usize],
    policy: &Policy,
    settings: &Settings,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<DefinitionSpec, SpecError> {
    let mut specs = Vec::with_capacity(run.len());
    for &j in run {
        specs.push((
            jobs[j].row.number,
            row_spec(&jobs[j], policy, settings, var)?,
        ));
    }
    let Some((first_row, first)) = specs.first().cloned() else {
        return Err(SpecError::NotContainer { row: 0 });
    };
    let mut timeout = first.timeout;
    for (row, spec) in &specs[1..] {
        if let Some(what) = difference(&first, spec) {
            return Err(SpecError::Differs {
                row: *row,
                first: first_row,
                what,
            });
        }
        timeout = largest(timeout, spec.timeout);
    }
    Ok(DefinitionSpec { timeout, ..first })
}

/// The larger timeout; none at all wins (a row without a limit must not get one).
fn largest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    Some(a?.max(b?))
}

/// The first field (other than the timeout) in which two rows' definitions differ.
fn difference(a: &DefinitionSpec, b: &DefinitionSpec) -> Option<&'static str> {
    let same_but_timeout = DefinitionSpec {
        timeout: a.timeout,
        ..b.clone()
    };
    if *a == same_but_timeout {
        return None;
    }
    Some(if a.image != b.image {
        "image"
    } else if a.volumes != b.volumes {
        "volume"
    } else if a.matlab_root != b.matlab_root {
        "matlab-root"
    } else if (a.vcpus, a.memory_mib) != (b.vcpus, b.memory_mib) {
        "the size (instance-type, vcpus, memory-mib)"
    } else if a.env != b.env {
        "the endpoint or region"
    } else {
        "the job definition"
    })
}

/// What one row alone would need as a definition.
fn row_spec(
    job: &BatchJob,
    policy: &Policy,
    settings: &Settings,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<DefinitionSpec, SpecError> {
    let row = job.row.number;
    let crate::plan::Work::Container(c) = &job.plan.work else {
        return Err(SpecError::NotContainer { row });
    };
    let matlab = rtb_model::contract::MATLAB_MOUNT_POINT;
    let volumes = c
        .volumes
        .iter()
        .filter(|(_, ctr, _)| ctr != matlab)
        .map(|(h, ctr, ro)| (h.into(), ctr.into(), *ro))
        .collect();
    let size = sizes::job_size(
        job.plan.launch.instance_types.first().map(String::as_str),
        settings.vcpus,
        settings.memory_mib,
    )
    .map_err(|e| SpecError::Size {
        row,
        problem: e.to_string(),
    })?;
    Ok(DefinitionSpec {
        image: c.image.clone(),
        matlab_root: job.args.job.work.matlab_root.clone(),
        volumes,
        env: job_env(
            job.plan.endpoint_url.as_deref(),
            job.plan.region.as_deref(),
            var,
        )?,
        retries: policy.retries,
        retry_on_job_error: policy.retry_on_job_error,
        timeout: job.plan.timeout,
        vcpus: size.vcpus,
        memory_mib: size.memory_mib,
        job_role: None,
    })
}

/// The jobs' fixed environment. On AWS: nothing of the client's (a job's access comes from
/// its job role). With a custom endpoint (a local emulator): the endpoint and the region, and
/// credentials only from [`TEST_JOB_CREDENTIALS`], never the client's own keys.
pub fn job_env(
    endpoint: Option<&str>,
    region: Option<&str>,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, SpecError> {
    let var = |k: &str| var(k).filter(|v| !v.trim().is_empty());
    let endpoint = endpoint
        .map(str::to_string)
        .or_else(|| var("AWS_ENDPOINT_URL"));
    let credentials = var(TEST_JOB_CREDENTIALS);
    let Some(endpoint) = endpoint else {
        return match credentials {
            Some(_) => Err(SpecError::Credentials(
                "is a test world's setting, honoured only with a custom endpoint (AWS_ENDPOINT_URL); on AWS the jobs' access comes from the job role: unset it".into(),
            )),
            None => Ok(BTreeMap::new()),
        };
    };
    let mut env = BTreeMap::from([("AWS_ENDPOINT_URL".to_string(), endpoint)]);
    if let Some(r) = region.map(str::to_string).or_else(|| var("AWS_REGION")) {
        env.insert("AWS_REGION".into(), r);
    }
    if let Some(c) = credentials {
        let (key, secret) = c
            .split_once(':')
            .filter(|(k, s)| !k.is_empty() && !s.is_empty())
            .ok_or_else(|| SpecError::Credentials("give KEYID:SECRET".into()))?;
        env.insert("AWS_ACCESS_KEY_ID".into(), key.to_string());
        env.insert("AWS_SECRET_ACCESS_KEY".into(), secret.to_string());
        // The given keys, not an instance's: no metadata service to wait for.
        env.insert("AWS_EC2_METADATA_DISABLED".into(), "true".into());
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::jobs::{self, Engine};
    use crate::batch::BatchFile;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn jobs_get_credentials_only_from_the_test_setting_and_only_with_an_endpoint() {
        let client_keys = [
            ("AWS_ACCESS_KEY_ID", "AKIACLIENT"),
            ("AWS_SECRET_ACCESS_KEY", "client-secret"),
            ("AWS_SESSION_TOKEN", "client-token"),
        ];
        // On AWS: nothing at all.
        assert_eq!(
            job_env(None, Some("eu-west-1"), &vars(&client_keys)),
            Ok(BTreeMap::new())
        );
        // An endpoint (an emulator, or a proxy in front of AWS): the endpoint and the region,
        // never the client's keys.
        let env = job_env(Some("http://127.0.0.1:4566"), None, &{
            let mut all = client_keys.to_vec();
            all.push(("AWS_REGION", "us-east-1"));
            vars(&all)
        })
        .unwrap();
        assert_eq!(
            env,
            BTreeMap::from([
                (
                    "AWS_ENDPOINT_URL".to_string(),
                    "http://127.0.0.1:4566".to_string()
                ),
                ("AWS_REGION".to_string(), "us-east-1".to_string()),
            ])
        );
        // The test world's explicit setting.
        let mut all = client_keys.to_vec();
        all.push((TEST_JOB_CREDENTIALS, "jobkey:jobsecret"));
        let env = job_env(
            Some("http://127.0.0.1:4566"),
            Some("us-east-1"),
            &vars(&all),
        )
        .unwrap();
        assert_eq!(env["AWS_ACCESS_KEY_ID"], "jobkey");
        assert_eq!(env["AWS_SECRET_ACCESS_KEY"], "jobsecret");
        assert_eq!(env["AWS_EC2_METADATA_DISABLED"], "true");
        assert!(!env.contains_key("AWS_SESSION_TOKEN"));
        // From the environment's endpoint too.
        all.push(("AWS_ENDPOINT_URL", "http://127.0.0.1:1"));
        assert!(job_env(None, None, &vars(&all)).unwrap()["AWS_ACCESS_KEY_ID"] == "jobkey");
        // Refused: without an endpoint (a real account), or malformed.
        for (endpoint, value) in [(None, "k:s"), (Some("http://127.0.0.1:1"), "nokey")] {
            let e = job_env(endpoint, None, &vars(&[(TEST_JOB_CREDENTIALS, value)]))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(TEST_JOB_CREDENTIALS), "{e}");
        }
    }

    /// The rows of a batch file whose csv has columns n, t (timeout), img (image suffix).
    fn rows(csv: &str, extra: &str) -> (Vec<BatchJob>, Policy, Settings) {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("jobs.csv"), csv).unwrap();
        let f = d.path().join("b.toml");
        std::fs::write(
            &f,
            format!(
                "[batch]\ncsv = \"jobs.csv\"\nengine = \"aws-batch\"\nqueue = \"q\"\nvcpus = 1\nmemory-mib = 512\n[job]\ncommand = \"r\"\noutput = \"s3://lab-renders/${{n}}\"\nimage = \"rtb-support:${{img}}\"\n{extra}"
            ),
        )
        .unwrap();
        let file = BatchFile::load(&f).unwrap();
        let policy = jobs::policy(&file, None, None, None).unwrap();
        let js = jobs::jobs(&file, &[], Engine::AwsBatch).unwrap();
        (js, policy, file.settings)
    }

    fn spec_of(csv: &str, extra: &str) -> Result<DefinitionSpec, SpecError> {
        let (js, policy, settings) = rows(csv, extra);
        let run: Vec<usize> = (0..js.len()).collect();
        definition_spec(&js, &run, &policy, &settings, &vars(&[]))
    }

    #[test]
    fn the_definition_takes_the_largest_row_timeout_and_none_wins() {
        let t = |csv: &str| {
            spec_of(csv, "timeout = \"${t}\"\n")
                .map(|s| s.timeout)
                .unwrap()
        };
        let min = |m: u64| Some(Duration::from_secs(m * 60));
        assert_eq!(t("n,t,img\n1,10m,1\n2,45m,1\n3,5m,1\n"), min(45));
        assert_eq!(t("n,t,img\n1,2h,1\n2,45m,1\n"), min(120));
        // A row with no limit: the definition has none either.
        assert_eq!(t("n,t,img\n1,10m,1\n2,none,1\n"), None);
    }

    #[test]
    fn rows_that_need_another_definition_are_refused_naming_the_row_and_what() {
        let cases: &[(&str, &str, &str)] = &[
            ("n,img\n1,1\n2,2\n", "", "row 2: image differs from row 1's"),
            (
                "n,img,v\n1,1,/a\n2,1,/b\n",
                "volume = \"${v}:/data\"\n",
                "row 2: volume differs from row 1's",
            ),
            (
                "n,img,m\n1,1,/opt/R2024a\n2,1,/opt/R2024b\n",
                "matlab-root = \"${m}\"\n",
                "row 2: matlab-root differs from row 1's",
            ),
        ];
        for (csv, extra, want) in cases {
            let e = spec_of(csv, extra).unwrap_err().to_string();
            assert!(e.starts_with(want), "{csv:?}: {e}");
        }
        assert!(spec_of("n,img\n1,1\n2,1\n", "").is_ok());
    }
}
