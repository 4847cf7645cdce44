//! The result of one `run-render`: a summary for people (Display) and one JSON document for
//! scripts (Serialize), and the exit code both imply.

use std::fmt;

use rtb_model::JobResult;
use serde::Serialize;

/// The client's own exit codes (defined once, in rtb-model); a job that ran passes its own
/// code through.
pub use rtb_model::exit::client as exit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The job ran and exited 0.
    Succeeded,
    /// The job ran and exited non-zero (its code is the exit code).
    JobFailed,
    TimedOut,
    Interrupted,
    PreflightFailed,
    LaunchFailed,
    AgentNeverOnline,
    RemoteFailed,
    /// The instance ended under the job (spot reclaim, console, crash).
    InstanceLost,
    /// AWS stopped answering: the client gave up following the job, which may still run.
    Unknown,
    /// `--detach`: the job started, and runs on by itself.
    Detached,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceFate {
    NotLaunched,
    Terminated,
    Kept,
    /// Termination was requested but not confirmed: it may still be running.
    Unconfirmed,
    /// `--detach`: left to run the job and end itself afterwards.
    Detached,
    /// A batch's instance, handed on to the batch's next job.
    Pooled,
}

/// Seconds per phase; absent when the phase did not happen.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Phases {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preflight_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminate_s: Option<f64>,
    pub total_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub job_id: String,
    pub outcome: Outcome,
    pub exit_code: i32,
    pub instance_id: Option<String>,
    pub instance: InstanceFate,
    pub ami: String,
    pub instance_type: String,
    pub region: Option<String>,
    pub output: Option<String>,
    /// Where the log chunks and the result record are.
    pub records: Option<String>,
    pub phases: Phases,
    pub log_lines: u64,
    /// The runner's own result record, when it wrote one.
    pub result: Option<JobResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `--keep` was given (for the summary's wording).
    #[serde(skip)]
    pub kept: bool,
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Add what went wrong to what is already said ("first; then").
    pub fn push_error(&mut self, e: impl Into<String>) {
        let e = e.into();
        self.error = Some(match self.error.take() {
            Some(prev) => format!("{prev}; {e}"),
            None => e,
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self.outcome {
            Outcome::Succeeded => "succeeded",
            Outcome::JobFailed => "FAILED",
            Outcome::TimedOut => "TIMED OUT",
            Outcome::Interrupted => "INTERRUPTED",
            Outcome::PreflightFailed => "not started (preflight failed)",
            Outcome::LaunchFailed => "not started (launch failed)",
            Outcome::AgentNeverOnline => "not started (SSM agent never online)",
            Outcome::RemoteFailed => "FAILED to run",
            Outcome::InstanceLost => "LOST (its instance ended under it)",
            Outcome::Unknown => "UNKNOWN (AWS stopped answering)",
            Outcome::Detached => "started, running on its own (--detach)",
        };
        writeln!(
            f,
            "job {} {word} (exit code {})",
            self.job_id, self.exit_code
        )?;
        if let Some(e) = &self.error {
            writeln!(f, "  error:    {e}")?;
        }
        let p = &self.phases;
        let mut parts = Vec::new();
        for (name, v) in [
            ("preflight", p.preflight_s),
            ("launch", p.launch_s),
            ("boot", p.boot_s),
            ("agent", p.agent_s),
            ("run", p.run_s),
            ("terminate", p.terminate_s),
        ] {
            if let Some(v) = v {
                parts.push(format!("{name} {v:.1}s"));
            }
        }
        writeln!(f, "  time:     {:.1}s ({})", p.total_s, parts.join(", "))?;
        if let Some(r) = &self.result {
            writeln!(
                f,
                "  runner:   {} via {}, input {} files / {} bytes, output {} files / {} bytes",
                serde_json::to_value(r.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                r.interpreter,
                r.input.files,
                r.input.bytes,
                r.output.files,
                r.output.bytes
            )?;
            if let Some(x) = &r.resumed {
                writeln!(
                    f,
                    "  resumed:  from attempt {}'s checkpoint: {} file{} restored ({} bytes){}",
                    x.from_attempt,
                    x.files,
                    if x.files == 1 { "" } else { "s" },
                    x.bytes,
                    if x.missed > 0 {
                        format!(", {} could not be and were made again", x.missed)
                    } else {
                        String::new()
                    }
                )?;
            }
            if let Some(c) = r.checkpoints.as_ref().filter(|c| c.count > 0) {
                writeln!(
                    f,
                    "  checkpoints: {} ({} files sent, {:.1}s beside the command)",
                    c.count, c.files, c.seconds
                )?;
            }
            if let Some(n) = &r.notice {
                writeln!(
                    f,
                    "  notice:   {} at {} (AWS: {})",
                    n.notice, n.seen_at, n.time
                )?;
            }
        }
        if let Some(o) = &self.output {
            writeln!(f, "  output:   {o}")?;
        }
        if let Some(r) = &self.records {
            writeln!(f, "  log:      {r}log/")?;
        }
        match (self.instance, &self.instance_id) {
            (InstanceFate::Terminated, Some(id)) => writeln!(f, "  instance: {id} terminated"),
            (InstanceFate::Kept, Some(id)) => writeln!(
                f,
                "  instance: {id} KEPT RUNNING (billing until its deadline). Reach it with\n            \
                 aws ssm start-session --target {id}\n            and end it with aws ec2 terminate-instances --instance-ids {id}"
            ),
            (InstanceFate::Detached, Some(id)) => writeln!(
                f,
                "  instance: {id} runs the job, then powers itself off{}\n  follow:   run-render logs {job} --follow    (or: status {job}, attach {job}, stop {job})",
                if self.kept { " (--keep: at its deadline)" } else { "" },
                job = self.job_id
            ),
            (InstanceFate::Pooled, Some(id)) => {
                writeln!(f, "  instance: {id} (the batch's, on to its next job)")
            }
            (InstanceFate::Unconfirmed, Some(id)) => writeln!(
                f,
                "  instance: {id} MAY STILL BE RUNNING: aws ec2 terminate-instances --instance-ids {id}"
            ),
            _ => writeln!(f, "  instance: none launched"),
        }
    }
}
