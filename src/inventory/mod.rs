//! Fetch, then decide: what `status`, `list` and `cleanup` know about jobs and instances
//! (the tagged instances, the records in S3, the local registry) and pure decisions over it,
//! table-tested without AWS.

use std::time::{Duration, SystemTime};

use rtb_model::{JobResult, Outcome as Recorded};
use serde::Serialize;

use crate::cloud::{Lifecycle, TaggedInstance};
use crate::registry::Entry;

pub mod pool;

/// A job's state, as `status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Launched (or being launched); the job has not written its first log line yet.
    Starting,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Interrupted,
    /// Its instance ended with no result record: a spot reclaim, the console, a crash.
    Lost,
    /// A `--shell` job whose instance has ended: shell jobs keep no result record.
    Ended,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Starting => "starting",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::TimedOut => "timed-out",
            JobState::Interrupted => "interrupted",
            JobState::Lost => "lost",
            JobState::Ended => "ended",
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Starting | JobState::Running)
    }
}

/// What was fetched about one job.
#[derive(Debug, Clone, Default)]
pub struct Seen<'a> {
    pub entry: Option<&'a Entry>,
    pub instance: Option<&'a TaggedInstance>,
    pub result: Option<&'a JobResult>,
    /// At least one log chunk exists: the runner has started.
    pub log_started: bool,
    /// Whether the job is a container job (has records).
    pub container: bool,
}

/// The state, and a note on why (a lost instance's state reason).
pub fn job_state(s: &Seen) -> (JobState, Option<String>) {
    if let Some(r) = s.result {
        return (recorded(r.outcome), r.error.clone());
    }
    // AWS Batch runs it on its own instances: its records alone say where it is.
    if let Some(q) = s.entry.and_then(|e| e.aws_batch_queue.as_deref()) {
        return if s.log_started {
            (JobState::Running, None)
        } else {
            (
                JobState::Starting,
                Some(format!("queued on AWS Batch queue {q}")),
            )
        };
    }
    match s.instance {
        Some(i) if !i.state.is_gone() => {
            let state = if s.log_started || (!s.container && i.state.name == Lifecycle::Running) {
                JobState::Running
            } else {
                JobState::Starting
            };
            (state, None)
        }
        gone => {
            // What the client saw, when it saw the end (a shell job's exit code).
            if let Some(end) = s.entry.and_then(|e| e.ended.as_ref()) {
                return (from_outcome_word(&end.outcome), None);
            }
            let why = match gone {
                Some(i) => format!("instance {} {}", i.id, i.state.describe()),
                None => "its instance is no longer known to EC2".to_string(),
            };
            if s.container {
                (JobState::Lost, Some(why))
            } else {
                (
                    JobState::Ended,
                    Some(format!("{why}; a --shell job keeps no result record")),
                )
            }
        }
    }
}

fn recorded(o: Recorded) -> JobState {
    match o {
        Recorded::Succeeded => JobState::Succeeded,
        Recorded::Failed | Recorded::RunnerError | Recorded::Incomplete => JobState::Failed,
        Recorded::TimedOut => JobState::TimedOut,
        Recorded::Interrupted => JobState::Interrupted,
    }
}

/// The client report's outcome word (`report::Outcome` as serialized) as a job state.
pub fn from_outcome_word(word: &str) -> JobState {
    match word {
        "succeeded" => JobState::Succeeded,
        "timed_out" => JobState::TimedOut,
        "interrupted" => JobState::Interrupted,
        "instance_lost" => JobState::Lost,
        "unknown" => JobState::Running,
        _ => JobState::Failed,
    }
}

/// Why `cleanup` would end an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Its job has ended (its result record exists).
    JobEnded,
    /// Its deadline has passed and it is still up.
    PastDeadline,
    /// No record of a job, and older than the limit.
    NoJob,
    /// Left alone, and why.
    Keep(String),
}

/// What cleanup knows about one of the tool's instances.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub instance: &'a TaggedInstance,
    /// The job's result record exists.
    pub result: bool,
    /// The job has written log chunks.
    pub log_started: bool,
    /// A client on this machine is following it right now.
    pub client_alive: bool,
}

/// Instances `cleanup` never ends, whatever their jobs: already ending, or a service's.
pub fn left_alone(i: &TaggedInstance) -> Option<Verdict> {
    if i.state.is_gone() {
        return Some(Verdict::Keep("already ending".into()));
    }
    // A compute environment's instance carries our tag (its launch tags) and no job.
    i.managed_by
        .as_ref()
        .map(|m| Verdict::Keep(format!("managed by {m}, which ends it")))
}

/// The pure decision for one instance. Only instances carrying the tool's tag reach here.
pub fn verdict(c: &Candidate, now: SystemTime, older_than: Duration) -> Verdict {
    let i = c.instance;
    if let Some(v) = left_alone(i) {
        return v;
    }
    if c.result {
        return Verdict::JobEnded;
    }
    if let Some(d) = i.deadline {
        if d <= now {
            return Verdict::PastDeadline;
        }
    }
    if c.client_alive {
        return Verdict::Keep("its client is following it".into());
    }
    let age = i
        .launched
        .and_then(|t| now.duration_since(t).ok())
        .unwrap_or_default();
    if !c.log_started && i.records.is_some() || i.records.is_none() && i.job_id.is_none() {
        if age >= older_than {
            return Verdict::NoJob;
        }
        return Verdict::Keep(format!(
            "no job record yet, but only {} old (--older-than {})",
            humantime::format_duration(Duration::from_secs(age.as_secs())),
            humantime::format_duration(older_than)
        ));
    }
    Verdict::Keep(if i.records.is_none() {
        "a --shell job, still running".into()
    } else {
        "its job is running".into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::InstanceState;
    use rtb_model::{Timings, Transfer, RESULT_SCHEMA};

    fn instance(
        state: Lifecycle,
        age: u64,
        deadline_in: Option<i64>,
        records: bool,
    ) -> TaggedInstance {
        let now = SystemTime::now();
        TaggedInstance {
            id: "i-1".into(),
            state: InstanceState {
                name: state,
                reason: Some("Client.UserInitiatedShutdown".into()),
            },
            instance_type: "t3.micro".into(),
            launched: Some(now - Duration::from_secs(age)),
            job_id: Some("j".into()),
            owner: Some("me".into()),
            records: records.then(|| "s3://b/o/_rtb-job/j/".into()),
            batch: None,
            launch_token: None,
            deadline: deadline_in.map(|s| {
                if s >= 0 {
                    now + Duration::from_secs(s as u64)
                } else {
                    now - Duration::from_secs((-s) as u64)
                }
            }),
            managed_by: None,
            pool: None,
            spot: false,
        }
    }

    fn result(outcome: Recorded) -> JobResult {
        JobResult {
            schema: RESULT_SCHEMA,
            job_id: "j".into(),
            outcome,
            exit_code: 0,
            interpreter: String::new(),
            executable: String::new(),
            started_at: String::new(),
            finished_at: String::new(),
            timings: Timings::default(),
            input: Transfer::default(),
            output: Transfer::default(),
            log_chunks: 0,
            log_lines: 0,
            skipped: Vec::new(),
            error: None,
            attempt: None,
            resumed: None,
            checkpoints: None,
            notice: None,
            picture: None,
            instance_id: None,
        }
    }

    #[test]
    fn job_states() {
        let running = instance(Lifecycle::Running, 60, Some(3600), true);
        let gone = instance(Lifecycle::Terminated, 60, Some(3600), true);
        let ok = result(Recorded::Succeeded);
        let failed = result(Recorded::Incomplete);
        let ended = Entry {
            ended: Some(crate::registry::Ended {
                outcome: "job_failed".into(),
                exit_code: 3,
                at: String::new(),
            }),
            ..Entry::default()
        };
        let table: Vec<(&str, Seen, JobState)> = vec![
            (
                "booting",
                Seen {
                    instance: Some(&running),
                    container: true,
                    ..Seen::default()
                },
                JobState::Starting,
            ),
            (
                "logging",
                Seen {
                    instance: Some(&running),
                    container: true,
                    log_started: true,
                    ..Seen::default()
                },
                JobState::Running,
            ),
            (
                "done",
                Seen {
                    instance: Some(&running),
                    result: Some(&ok),
                    container: true,
                    ..Seen::default()
                },
                JobState::Succeeded,
            ),
            (
                "done, gone",
                Seen {
                    instance: Some(&gone),
                    result: Some(&ok),
                    container: true,
                    ..Seen::default()
                },
                JobState::Succeeded,
            ),
            (
                "incomplete",
                Seen {
                    result: Some(&failed),
                    container: true,
                    ..Seen::default()
                },
                JobState::Failed,
            ),
            (
                "lost",
                Seen {
                    instance: Some(&gone),
                    container: true,
                    log_started: true,
                    ..Seen::default()
                },
                JobState::Lost,
            ),
            (
                "vanished",
                Seen {
                    container: true,
                    ..Seen::default()
                },
                JobState::Lost,
            ),
            (
                "shell running",
                Seen {
                    instance: Some(&running),
                    ..Seen::default()
                },
                JobState::Running,
            ),
            (
                "shell gone",
                Seen {
                    instance: Some(&gone),
                    ..Seen::default()
                },
                JobState::Ended,
            ),
            (
                "shell seen ending",
                Seen {
                    instance: Some(&gone),
                    entry: Some(&ended),
                    ..Seen::default()
                },
                JobState::Failed,
            ),
        ];
        for (name, seen, want) in table {
            assert_eq!(job_state(&seen).0, want, "{name}");
        }
        let (_, why) = job_state(&Seen {
            instance: Some(&gone),
            container: true,
            ..Seen::default()
        });
        assert!(why
            .unwrap()
            .contains("terminated: Client.UserInitiatedShutdown"));
    }

    #[test]
    fn cleanup_verdicts() {
        let now = SystemTime::now();
        let limit = Duration::from_secs(3600);
        let c = |i: &TaggedInstance, result: bool, log: bool, alive: bool| {
            verdict(
                &Candidate {
                    instance: i,
                    result,
                    log_started: log,
                    client_alive: alive,
                },
                now,
                limit,
            )
        };
        let kept_done = instance(Lifecycle::Running, 600, Some(3600), true);
        assert_eq!(c(&kept_done, true, true, false), Verdict::JobEnded);
        let overdue = instance(Lifecycle::Running, 600, Some(-5), true);
        assert_eq!(c(&overdue, false, true, false), Verdict::PastDeadline);
        let orphan = instance(Lifecycle::Running, 7200, Some(3600), true);
        assert_eq!(c(&orphan, false, false, false), Verdict::NoJob);
        let young = instance(Lifecycle::Pending, 60, Some(3600), true);
        assert!(matches!(c(&young, false, false, false), Verdict::Keep(_)));
        let working = instance(Lifecycle::Running, 7200, Some(3600), true);
        assert!(matches!(c(&working, false, true, false), Verdict::Keep(_)));
        assert!(
            matches!(c(&orphan, false, false, true), Verdict::Keep(_)),
            "followed by a live client"
        );
        let gone = instance(Lifecycle::Terminated, 7200, Some(-5), true);
        assert!(matches!(c(&gone, true, true, false), Verdict::Keep(_)));
        let batch_ce = TaggedInstance {
            job_id: None,
            records: None,
            deadline: None,
            managed_by: Some("AWS Batch".into()),
            ..orphan.clone()
        };
        assert!(
            matches!(c(&batch_ce, false, false, false), Verdict::Keep(why) if why.contains("AWS Batch")),
            "a compute environment's instance: no job, old, but not ours to end"
        );
        let shell = instance(Lifecycle::Running, 7200, Some(3600), false);
        assert!(
            matches!(c(&shell, false, false, false), Verdict::Keep(_)),
            "a shell job has a job id"
        );
    }
}
