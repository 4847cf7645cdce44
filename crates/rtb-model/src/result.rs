//! The result record the runner writes last, and the client and later tools read.

use serde::{Deserialize, Serialize};

/// Version of the record's shape; bumped only for incompatible changes.
pub const RESULT_SCHEMA: u32 = 1;

/// How a job ended, from the runner's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The interpreter ran the command and exited 0.
    Succeeded,
    /// The interpreter exited non-zero (the command raised an error, or the interpreter failed).
    Failed,
    /// The job ran longer than its timeout and was stopped.
    TimedOut,
    /// A signal (docker stop, Ctrl-C) stopped the job.
    Interrupted,
    /// The runner could not do its own part (input copy, interpreter start, output upload).
    RunnerError,
    /// The command succeeded, but some outputs could not be uploaded (see `skipped`).
    Incomplete,
}

/// An output the runner could not upload, and why (a name that is not UTF-8, an unreadable
/// folder, a file that kept changing, a PUT that failed after its retries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The local path, as the job wrote it (lossy where it is not UTF-8).
    pub path: String,
    pub reason: String,
}

/// Files and bytes moved by one copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub files: u64,
    pub bytes: u64,
}

/// Seconds spent in each phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub input_s: f64,
    pub command_s: f64,
    pub output_s: f64,
    pub total_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    pub schema: u32,
    pub job_id: String,
    pub outcome: Outcome,
    /// The runner's exit code (the interpreter's own code when it ran to the end).
    pub exit_code: i32,
    /// `matlab` or `octave`, and the executable that ran.
    pub interpreter: String,
    pub executable: String,
    /// RFC 3339 UTC times.
    pub started_at: String,
    pub finished_at: String,
    pub timings: Timings,
    pub input: Transfer,
    pub output: Transfer,
    /// Log chunks written, and lines in them.
    pub log_chunks: u64,
    pub log_lines: u64,
    /// Outputs that were not uploaded; everything else was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
    /// What went wrong, for every outcome but `succeeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl JobResult {
    pub fn to_json(&self) -> String {
        // A struct of plain fields always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let r = JobResult {
            schema: RESULT_SCHEMA,
            job_id: "rr-1".into(),
            outcome: Outcome::TimedOut,
            exit_code: 124,
            interpreter: "octave".into(),
            executable: "octave-cli".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            finished_at: "2026-01-01T00:00:01Z".into(),
            timings: Timings::default(),
            input: Transfer {
                files: 2,
                bytes: 10,
            },
            output: Transfer::default(),
            log_chunks: 3,
            log_lines: 7,
            skipped: vec![Skipped {
                path: "/out/a.png".into(),
                reason: "PUT failed: 503".into(),
            }],
            error: Some("timed out after 1s".into()),
        };
        let text = r.to_json();
        assert!(text.contains("\"outcome\": \"timed_out\""), "{text}");
        let back: JobResult = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
    }
}
