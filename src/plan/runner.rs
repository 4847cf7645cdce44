//! The runner's settings as the client writes them: the container's environment, from the
//! job's flags (`--command`, `--output`, `--checkpoint-every`, `--env` ...), and what a batch
//! changes per attempt (the attempt's number, the checkpoint it resumes from, spot notices).

use std::time::Duration;

use rtb_model::{contract, JobRecords, S3Url};

use super::{bad, Plan, PlanError, Work};

/// Runner settings only the client may set: it must know them to follow the job.
// Where the records go (LOG_BUCKET, RTB_RUN_ID) and what they are named: the client follows them.
const RESERVED: &[&str] = &[
    "LOG_BUCKET",
    "RTB_RUN_ID",
    "RTB_JOB_ID",
    "RTB_TIMEOUT",
    "RTB_LOG_EVERY",
];

/// The runner settings the client sets from its own flags.
pub(super) struct RunnerSettings {
    pub command: String,
    pub toolboxes: Option<String>,
    pub startup: Option<String>,
    pub interpreter: Option<String>,
    pub input: Option<S3Url>,
    pub output: Option<S3Url>,
    pub matlab_root: bool,
    pub timeout: Option<Duration>,
    pub checkpoint_every: Option<Duration>,
    pub extra: Vec<String>,
}

impl RunnerSettings {
    pub(super) fn env(self, job_id: &str) -> Result<Vec<(String, String)>, PlanError> {
        let mut env: Vec<(String, String)> = Vec::new();
        let mut set = |var: contract::Var, value: String| env.push((var.name.to_string(), value));
        set(contract::COMMAND, self.command);
        if let Some(t) = self.toolboxes {
            set(contract::TOOLBOXES, t);
        }
        if let Some(s) = self.startup {
            set(contract::STARTUP, s);
        }
        if let Some(i) = &self.input {
            set(contract::INPUT_BUCKET, i.to_string());
        }
        if let Some(o) = &self.output {
            set(contract::OUTPUT_BUCKET, o.to_string());
        }
        match (self.interpreter, self.matlab_root) {
            (Some(i), _) => set(contract::MATLAB_EXECUTABLE, i),
            (None, true) => set(
                contract::MATLAB_EXECUTABLE,
                format!("{}/bin/matlab", contract::MATLAB_MOUNT_POINT),
            ),
            (None, false) => {}
        }
        if let Some(t) = self.timeout {
            set(contract::TIMEOUT, humantime::format_duration(t).to_string());
        }
        if let Some(every) = self.checkpoint_every {
            set(
                contract::CHECKPOINT_EVERY,
                humantime::format_duration(every).to_string(),
            );
        }
        set(contract::JOB_ID, job_id.to_string());

        for pair in self.extra {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| bad("--env", format!("'{pair}' is not NAME=VALUE")))?;
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(bad("--env", format!("'{name}' is not a variable name")));
            }
            if let Some((_, _)) = env.iter().find(|(n, _)| n == name) {
                return Err(bad(
                    "--env",
                    format!("{name} is already set by a run-render flag; set it there"),
                ));
            }
            if RESERVED.contains(&name) {
                return Err(bad(
                    "--env",
                    format!(
                        "{name} is set by run-render (the client follows the log where it puts it)"
                    ),
                ));
            }
            if name.starts_with("AWS_") {
                return Err(bad(
                    "--env",
                    format!("{name}: AWS settings and credentials are not passed to the job; the instance uses its profile"),
                ));
            }
            env.push((name.to_string(), value.to_string()));
        }
        Ok(env)
    }
}

/// Who reads a job's log, and so how often the runner writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LogPace {
    /// A single run shows each line as it comes: a chunk at most every 250 ms puts a line on
    /// the screen within about half a second (bench/client.sh), for up to 4 PUTs a second
    /// while the job prints (~$0.07 an hour).
    Followed,
    /// Nobody follows a detached job closely (`attach` may, a second behind).
    Detached,
    /// A batch's logs go to files, read every few seconds (every second for the jobs whose
    /// line is in view): chunks 2 s apart halve the PUTs and the client's GETs.
    Batch,
}

impl LogPace {
    fn every(self) -> &'static str {
        match self {
            LogPace::Followed => "250ms",
            LogPace::Detached => "1s",
            LogPace::Batch => "2s",
        }
    }
}

/// The shortest --checkpoint-every: more often would spend the job's time walking its folder.
const CHECKPOINT_MIN: Duration = Duration::from_secs(1);
/// The longest: a week is past any sensible interval, and keeps the value a real time.
const CHECKPOINT_MAX: Duration = Duration::from_secs(7 * 24 * 3600);

/// `--checkpoint-every`, checked: a duration of at least a second, and only with `--output`
/// (the checkpoints live with the job's records there).
pub(super) fn checkpoint_every(
    value: Option<&str>,
    output: &Option<S3Url>,
) -> Result<Option<Duration>, PlanError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let every = super::parse_duration("--checkpoint-every", value, CHECKPOINT_MAX)?;
    if every < CHECKPOINT_MIN {
        return Err(bad("--checkpoint-every", "must be at least 1s"));
    }
    if output.is_none() {
        return Err(bad(
            "--checkpoint-every",
            "checkpoints are kept with the job's records under --output: give --output",
        ));
    }
    Ok(Some(every))
}

impl Plan {
    /// Set one runner setting of a container job, replacing an earlier value.
    fn set_runner(&mut self, var: contract::Var, value: String) {
        if let Work::Container(c) = &mut self.work {
            c.env.retain(|(k, _)| k != var.name);
            c.env.push((var.name.to_string(), value));
        }
    }

    /// How often the runner may write the job's log to S3 (RTB_LOG_EVERY): a PUT each time.
    pub(super) fn log_every(mut self, pace: LogPace) -> Plan {
        self.set_runner(contract::LOG_EVERY, pace.every().to_string());
        self
    }

    /// This plan as attempt `n` of its job: the runner's RTB_ATTEMPT (its command sees it).
    pub fn attempt(mut self, n: u32) -> Plan {
        self.set_runner(contract::ATTEMPT, n.to_string());
        self
    }

    /// This attempt restores the checkpoint an earlier attempt saved in `from` (its records
    /// folder) into OUTPUT_SCRATCH before the command (RTB_RESUME_FROM).
    pub fn resuming(mut self, from: &JobRecords) -> Plan {
        self.set_runner(contract::RESUME_FROM, from.root().to_string());
        self
    }

    /// This attempt restores the newest checkpoint of the attempts before it, beside its own
    /// records (RTB_RESUME_FROM=previous): the runner passes over one lost before its first
    /// checkpoint.
    pub fn resuming_previous(mut self) -> Plan {
        self.set_runner(contract::RESUME_FROM, "previous".to_string());
        self
    }

    /// The runner watches for a spot interruption notice (a spot attempt): it records the
    /// interruption in the attempt's records (a reclaim, not a failure) and checkpoints at once.
    pub fn watching_notices(mut self) -> Plan {
        self.set_runner(contract::WATCH_NOTICES, "on".to_string());
        self
    }

    /// How often the runner checkpoints OUTPUT_SCRATCH, when it does.
    pub fn checkpoint_every(&self) -> Option<Duration> {
        let Work::Container(c) = &self.work else {
            return None;
        };
        c.env
            .iter()
            .find(|(k, _)| k == contract::CHECKPOINT_EVERY.name)
            .and_then(|(_, v)| humantime::parse_duration(v).ok())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    // The plan module's own helpers: a plan from run's flags, and its error's text.
    use crate::plan::tests::{err, plan};

    #[test]
    fn the_log_is_written_as_often_as_someone_reads_it() {
        let pace = |p: &Plan| match &p.work {
            Work::Container(c) => c
                .env
                .iter()
                .filter(|(k, _)| k == "RTB_LOG_EVERY")
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>(),
            Work::Shell(_) => panic!("container expected"),
        };
        let run = plan(&["--command", "x"]).unwrap();
        assert_eq!(pace(&run), ["250ms"]);
        assert_eq!(pace(&run.in_batch("b")), ["2s"], "one setting, the batch's");
        let detached = plan(&["--command", "x", "--detach"]).unwrap();
        assert_eq!(pace(&detached), ["1s"]);
        let e = err(&["--command", "x", "--env", "RTB_LOG_EVERY=5s"]);
        assert!(e.starts_with("--env: RTB_LOG_EVERY"), "{e}");
    }

    #[test]
    fn checkpoint_every_is_a_runner_setting() {
        let p = plan(&[
            "--command",
            "x",
            "--output",
            "s3://out-bucket/run",
            "--checkpoint-every",
            "15m",
        ])
        .unwrap();
        let Work::Container(c) = &p.work else {
            panic!("container expected")
        };
        assert!(c
            .env
            .contains(&("RTB_CHECKPOINT_EVERY".into(), "15m".into())));
        assert_eq!(p.checkpoint_every(), Some(Duration::from_secs(900)));
        // Off unless asked for.
        let p = plan(&["--command", "x", "--output", "s3://out-bucket/run"]).unwrap();
        assert_eq!(p.checkpoint_every(), None);

        for (args, want) in [
            (
                &["--command", "x", "--checkpoint-every", "15m"][..],
                "--checkpoint-every: checkpoints are kept with the job's records under --output",
            ),
            (
                &[
                    "--command",
                    "x",
                    "--output",
                    "s3://out-bucket/r",
                    "--checkpoint-every",
                    "soon",
                ][..],
                "--checkpoint-every: 'soon' is not a duration",
            ),
            (
                &[
                    "--command",
                    "x",
                    "--output",
                    "s3://out-bucket/r",
                    "--checkpoint-every",
                    "100ms",
                ][..],
                "--checkpoint-every: must be at least 1s",
            ),
            (
                &[
                    "--command",
                    "x",
                    "--output",
                    "s3://out-bucket/r",
                    "--checkpoint-every",
                    "15m",
                    "--env",
                    "RTB_CHECKPOINT_EVERY=1m",
                ][..],
                "--env: RTB_CHECKPOINT_EVERY is already set",
            ),
        ] {
            let e = err(args);
            assert!(e.starts_with(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn an_attempt_carries_its_number_where_it_resumes_and_the_notice_watch() {
        let base = plan(&[
            "--command",
            "x",
            "--output",
            "s3://out-bucket/run",
            "--job-id",
            "j1",
        ])
        .unwrap();
        let from = JobRecords::under_output(&"s3://out-bucket/run".parse().unwrap(), "j1")
            .attempt("r1", 1);
        let p = base
            .clone()
            .attempt(2)
            .resuming(&from)
            .watching_notices()
            .attempt(3);
        let Work::Container(c) = &p.work else {
            panic!("container expected")
        };
        let all = |n: &str| {
            c.env
                .iter()
                .filter(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(all("RTB_ATTEMPT"), ["3"], "set once, the newest value");
        assert_eq!(
            all("RTB_RESUME_FROM"),
            ["s3://out-bucket/run/_rtb-job/j1/r1-a1/"]
        );
        assert_eq!(all("RTB_WATCH_NOTICES"), ["on"]);
        // A raw shell command has no runner to tell.
        let shell = plan(&["--shell", "true"]).unwrap().attempt(2);
        assert!(matches!(shell.work, Work::Shell(_)));
    }
}
