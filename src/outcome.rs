//! How a job ended, decided from what was seen: a pure function over the facts, table-tested
//! without AWS. The lifecycle gathers the facts; this file holds the judgement.

use std::time::Duration;

use rtb_model::exit::{client as exit, runner};
use rtb_model::JobResult;

use crate::cloud::InvocationStatus;
use crate::engine::ec2::script::CONTAINER_START_FAILED;
use crate::report::Outcome;

/// Why the client itself ended the job early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopping {
    Interrupted,
    /// The instance's own deadline (timeout + margin) came with the job still running, or a
    /// shell command ran past its --timeout.
    TimedOut,
}

/// What was seen when the job ended.
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    /// A container job (the runner's codes apply), not a raw shell command.
    pub container: bool,
    pub stopping: Option<Stopping>,
    /// The remote command's status and exit code, when it ended.
    pub ended: Option<(InvocationStatus, i32)>,
    /// The instance's state when it was found gone under the job (spot, console, crash).
    pub instance_gone: Option<String>,
    /// The runner's result record, when it wrote one.
    pub result: Option<&'a JobResult>,
    /// The last line the job script wrote to stderr (why a container did not start).
    pub script_error: Option<&'a str>,
    pub timeout: Option<Duration>,
}

/// The outcome, the exit code and what to say about it.
pub fn classify(f: &Facts) -> (Outcome, i32, Option<String>) {
    // The job finished and recorded itself: that record is the truth about the job, even if
    // the instance went away afterwards.
    let recorded = f.result.filter(|_| f.container);
    match (f.stopping, &f.instance_gone, recorded) {
        (Some(Stopping::Interrupted), _, _) => {
            let saved = f.result.is_some_and(|r| r.output.files > 0 || r.skipped.is_empty());
            let why = if saved {
                "interrupted; the job was stopped and its outputs saved (see its result record)"
            } else if f.container {
                "interrupted; the job did not confirm that its outputs were saved (no result record)"
            } else {
                "interrupted; the command was stopped"
            };
            return (Outcome::Interrupted, exit::INTERRUPTED, Some(why.into()));
        }
        (Some(Stopping::TimedOut), _, _) => {
            let why = match f.container {
                true => "the instance reached its deadline (--timeout + --deadline-margin) with the job still running; it was stopped".to_string(),
                false => format!(
                    "the command ran past its --timeout of {} and was stopped",
                    humantime::format_duration(f.timeout.unwrap_or_default())
                ),
            };
            return (Outcome::TimedOut, exit::TIMED_OUT, Some(why));
        }
        (None, Some(state), None) => {
            return (
                Outcome::InstanceLost,
                exit::INSTANCE_LOST,
                Some(format!(
                    "the instance ended under the job ({state}): a spot reclaim, someone's console or a crash; run the job again"
                )),
            )
        }
        _ => {}
    }
    let (status, code) = match (f.ended, recorded) {
        (Some(e), _) => e,
        // The command's own answer was lost, but the runner's record says how it ended.
        (None, Some(r)) => (
            if r.exit_code == 0 {
                InvocationStatus::Success
            } else {
                InvocationStatus::Failed
            },
            r.exit_code,
        ),
        (None, None) => {
            return (
                Outcome::RemoteFailed,
                exit::REMOTE,
                Some("the remote command ended without an exit code".into()),
            )
        }
    };
    match status {
        InvocationStatus::Success => (Outcome::Succeeded, 0, None),
        InvocationStatus::Failed if f.container && code == CONTAINER_START_FAILED => (
            Outcome::RemoteFailed,
            exit::REMOTE,
            Some(f.script_error.unwrap_or("the job's container could not be started").to_string()),
        ),
        // Not the client's "bad input": the runner, on the instance, refused a setting (often a
        // bucket the instance role cannot reach). Its reason is in the log.
        InvocationStatus::Failed if f.container && code == runner::BAD_SETTINGS => (
            Outcome::RemoteFailed,
            exit::REMOTE,
            Some(recorded_error(f).unwrap_or_else(|| "the runner refused its settings on the instance (its reason is in the log above; often a bucket the instance role cannot reach)".into())),
        ),
        InvocationStatus::Failed if code == runner::TIMED_OUT => (
            Outcome::TimedOut,
            exit::TIMED_OUT,
            Some(format!(
                "the command ran past its --timeout of {}",
                humantime::format_duration(f.timeout.unwrap_or_default())
            )),
        ),
        InvocationStatus::Failed if f.container && code == runner::OUTPUT_INCOMPLETE => {
            let skipped = f.result.map(|r| r.skipped.len()).unwrap_or_default();
            (
                Outcome::JobFailed,
                code,
                Some(format!(
                    "the command succeeded but {skipped} output file(s) could not be uploaded (listed in the log and the result record); everything else was"
                )),
            )
        }
        InvocationStatus::Failed if code > 0 => (
            Outcome::JobFailed,
            code,
            Some(recorded_error(f).unwrap_or_else(|| format!("the job exited with code {code}"))),
        ),
        other => (
            Outcome::RemoteFailed,
            exit::REMOTE,
            Some(format!("the remote command ended {other:?} (code {code})")),
        ),
    }
}

fn recorded_error(f: &Facts) -> Option<String> {
    f.result.and_then(|r| r.error.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtb_model::{Outcome as Recorded, Timings, Transfer, RESULT_SCHEMA};

    fn record(code: i32, outcome: Recorded, error: Option<&str>) -> JobResult {
        JobResult {
            schema: RESULT_SCHEMA,
            job_id: "j".into(),
            outcome,
            exit_code: code,
            interpreter: "octave".into(),
            executable: "octave-cli".into(),
            started_at: String::new(),
            finished_at: String::new(),
            timings: Timings::default(),
            input: Transfer::default(),
            output: Transfer { files: 2, bytes: 9 },
            log_chunks: 1,
            log_lines: 1,
            skipped: Vec::new(),
            error: error.map(str::to_string),
            attempt: None,
            resumed: None,
            checkpoints: None,
            notice: None,
            picture: None,
            instance_id: None,
        }
    }

    #[test]
    fn endings_are_classified() {
        use InvocationStatus::*;
        let failed = record(1, Recorded::Failed, Some("the command failed: boom"));
        let ok = record(0, Recorded::Succeeded, None);
        let stopped = record(143, Recorded::Interrupted, Some("stopped by signal 15"));
        let c = |ended, result| Facts {
            container: true,
            ended,
            result,
            ..Facts::default()
        };
        let table: Vec<(&str, Facts, Outcome, i32, &str)> = vec![
            (
                "success",
                c(Some((Success, 0)), Some(&ok)),
                Outcome::Succeeded,
                0,
                "",
            ),
            (
                "MATLAB error",
                c(Some((Failed, 1)), Some(&failed)),
                Outcome::JobFailed,
                1,
                "boom",
            ),
            (
                "no record",
                c(Some((Failed, 3)), None),
                Outcome::JobFailed,
                3,
                "code 3",
            ),
            (
                "timeout",
                c(Some((Failed, 124)), None),
                Outcome::TimedOut,
                124,
                "--timeout",
            ),
            (
                "container",
                Facts {
                    script_error: Some("could not start"),
                    ..c(Some((Failed, 125)), None)
                },
                Outcome::RemoteFailed,
                68,
                "could not start",
            ),
            (
                "settings",
                c(Some((Failed, 2)), None),
                Outcome::RemoteFailed,
                68,
                "refused",
            ),
            (
                "incomplete",
                c(Some((Failed, 6)), None),
                Outcome::JobFailed,
                6,
                "could not be uploaded",
            ),
            (
                "lost",
                Facts {
                    instance_gone: Some("terminated".into()),
                    ..c(Some((Failed, 137)), None)
                },
                Outcome::InstanceLost,
                70,
                "ended under the job",
            ),
            // Gone after the job recorded its end: the record wins.
            (
                "gone after",
                Facts {
                    instance_gone: Some("terminated".into()),
                    ..c(None, Some(&ok))
                },
                Outcome::Succeeded,
                0,
                "",
            ),
            (
                "answer lost",
                c(None, Some(&failed)),
                Outcome::JobFailed,
                1,
                "boom",
            ),
            (
                "nothing",
                c(None, None),
                Outcome::RemoteFailed,
                68,
                "without an exit code",
            ),
            (
                "ctrl-c saved",
                Facts {
                    stopping: Some(Stopping::Interrupted),
                    ..c(Some((Failed, 143)), Some(&stopped))
                },
                Outcome::Interrupted,
                130,
                "outputs saved",
            ),
            (
                "ctrl-c unsaved",
                Facts {
                    stopping: Some(Stopping::Interrupted),
                    ..c(None, None)
                },
                Outcome::Interrupted,
                130,
                "did not confirm",
            ),
            (
                "deadline",
                Facts {
                    stopping: Some(Stopping::TimedOut),
                    ..c(None, None)
                },
                Outcome::TimedOut,
                124,
                "deadline",
            ),
            (
                "shell",
                Facts {
                    container: false,
                    ended: Some((Failed, 7)),
                    ..Facts::default()
                },
                Outcome::JobFailed,
                7,
                "code 7",
            ),
            (
                "shell 125",
                Facts {
                    container: false,
                    ended: Some((Failed, 125)),
                    ..Facts::default()
                },
                Outcome::JobFailed,
                125,
                "code 125",
            ),
            (
                "cancelled",
                c(Some((Cancelled, -1)), None),
                Outcome::RemoteFailed,
                68,
                "Cancelled",
            ),
        ];
        for (name, facts, outcome, code, says) in table {
            let (o, c, why) = classify(&facts);
            assert_eq!((o, c), (outcome, code), "{name}");
            assert!(why.unwrap_or_default().contains(says), "{name}");
        }
    }
}
