//! What AWS Batch says of a submitted job, for `status` and `logs --follow`.

use std::time::{Duration, SystemTime};

use super::BatchRecord;
use crate::cloud::Cloud;
use crate::engine::aws_batch::{adopt, diagnose, sizes, AwsBatch, JobState};

/// Why jobs of `size` have been RUNNABLE on `queue` for `waited`, once that is longer than
/// normal (a compute environment scaling from zero takes minutes): the diagnosis's advice.
pub(super) async fn runnable_cause(
    engine: &AwsBatch,
    queue: &str,
    size: sizes::Size,
    waited: Duration,
) -> Option<String> {
    if waited <= diagnose::RUNNABLE_PATIENCE {
        return None;
    }
    let (q, _, envs) = engine.queue_facts(queue).await.ok()?;
    let facts = diagnose::RunnableFacts {
        runnable_for: waited,
        size,
        queue: q,
        environments: envs,
    };
    diagnose::runnable(&facts).map(|c| c.advice())
}

/// What AWS Batch says of a submitted job that has no result record yet: (state, why), for
/// `status`. A job RUNNABLE for long gets the likely cause (AWS Batch's best-known trap).
pub async fn job_state(
    cloud: &Cloud,
    record: &BatchRecord,
    job_id: &str,
) -> Option<(crate::inventory::JobState, Option<String>)> {
    use crate::inventory::JobState as S;
    let engine = AwsBatch::new(cloud.config(), &crate::plan::owner());
    let submitted = match (record.state, &record.run_id) {
        // Its client stopped while submitting: AWS Batch knows what it made (rtb:run).
        (super::Submission::Submitting, Some(run)) => {
            let found = engine.batch_jobs(&record.queue, &record.batch).await.ok()?;
            let ours: Vec<_> = found
                .into_iter()
                .filter(|j| j.belongs_to(engine.owner()) && j.run() == Some(run.as_str()))
                .collect();
            let mut s = adopt(&record.batch, &record.jobs, record.per_row, &ours);
            s.queue = record.queue.clone();
            s
        }
        _ => record.submitted.clone(),
    };
    if !submitted.jobs.iter().any(|j| j.job_id == job_id) {
        let run = record.run_id.as_deref().unwrap_or("?");
        let why = match record.state {
            super::Submission::Submitted => return None,
            super::Submission::Incomplete => {
                format!("not submitted: submitting run {run} stopped on an error before it")
            }
            super::Submission::Submitting => format!(
                "not submitted by run {run}: its client stopped before submitting it (or is submitting still)"
            ),
        };
        return Some((
            S::Failed,
            Some(format!(
                "{why}; `run-render batch FILE --resume` submits it once the rest have ended"
            )),
        ));
    }
    let states = engine.states(&submitted).await.ok()?;
    let st = states.into_iter().find(|s| s.job_id == job_id)?.status?;
    let reason = st.reason.clone().or(st.container_reason.clone());
    Some(match st.state {
        JobState::Succeeded => (S::Succeeded, None),
        JobState::Failed => (
            S::Failed,
            reason.or(st.exit_code.map(|c| format!("exit code {c}"))),
        ),
        JobState::Starting | JobState::Running => (S::Running, None),
        JobState::Runnable => {
            let waited = st
                .created_at
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or_default();
            let mut why = format!(
                "RUNNABLE on {} for {}",
                record.queue,
                crate::cmd::short_duration(waited)
            );
            let size = sizes::Size {
                vcpus: record.vcpus,
                memory_mib: record.memory_mib,
            };
            if let Some(advice) = runnable_cause(&engine, &record.queue, size, waited).await {
                why = format!("{why}: {advice}");
            }
            (S::Starting, Some(why))
        }
        other => (
            S::Starting,
            Some(format!("{} on {}", other.as_aws(), record.queue)),
        ),
    })
}

/// What `status` says of a job on AWS Batch, from its newest attempt's result record and AWS
/// Batch's word: AWS Batch's, unless the record is final. A record with AWS Batch still
/// going on is an earlier attempt's: the job is being retried, not over. `None`: the record
/// stands.
pub fn retried_view(
    result: Option<&rtb_model::JobResult>,
    attempt: Option<u32>,
    batch: Option<(crate::inventory::JobState, Option<String>)>,
) -> Option<(crate::inventory::JobState, Option<String>)> {
    use crate::inventory::JobState as S;
    let (state, detail) = batch?;
    let Some(r) = result else {
        return Some((state, detail));
    };
    if matches!(state, S::Succeeded | S::Failed) {
        return None;
    }
    let ended = match attempt {
        Some(n) => format!("attempt {n} ended with exit code {}", r.exit_code),
        None => format!("an attempt ended with exit code {}", r.exit_code),
    };
    let detail = match detail {
        Some(d) => format!("{ended}; AWS Batch is trying again ({d})"),
        None => format!("{ended}; AWS Batch is trying again"),
    };
    Some((state, Some(detail)))
}

/// The newest attempt's records of run `run` under a job's folder (AWS Batch's last attempt of
/// it), if any attempt wrote.
pub async fn last_attempt(
    cloud: &Cloud,
    base: &rtb_model::JobRecords,
    run: &str,
) -> Option<rtb_model::JobRecords> {
    let folders = cloud
        .subfolders(base.bucket(), &base.root().dir_prefix())
        .await
        .ok()?;
    folders
        .iter()
        .filter_map(|f| rtb_model::layout::parse_attempt_dir(f))
        .filter(|(r, _)| *r == run)
        .map(|(_, n)| n)
        .max()
        .map(|n| base.attempt(run, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::JobState as S;

    fn result(code: i32) -> rtb_model::JobResult {
        rtb_model::JobResult {
            schema: rtb_model::RESULT_SCHEMA,
            job_id: "j".into(),
            outcome: if code == 0 {
                rtb_model::Outcome::Succeeded
            } else {
                rtb_model::Outcome::Failed
            },
            exit_code: code,
            interpreter: String::new(),
            executable: String::new(),
            started_at: String::new(),
            finished_at: String::new(),
            timings: Default::default(),
            input: Default::default(),
            output: Default::default(),
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
    fn an_earlier_attempts_record_does_not_end_a_job_aws_batch_retries() {
        let failed = result(1);
        let ok = result(0);
        type Case<'a> = (
            Option<&'a rtb_model::JobResult>,
            Option<(S, Option<String>)>,
            Option<(S, Option<&'a str>)>,
        );
        let cases: Vec<Case> = vec![
            // No record: AWS Batch's word.
            (None, Some((S::Starting, Some("RUNNABLE on q".into()))), Some((S::Starting, Some("RUNNABLE on q")))),
            // A failed attempt while AWS Batch retries: not over.
            (
                Some(&failed),
                Some((S::Starting, Some("RUNNABLE on q".into()))),
                Some((S::Starting, Some("attempt 1 ended with exit code 1; AWS Batch is trying again (RUNNABLE on q)"))),
            ),
            (
                Some(&failed),
                Some((S::Running, None)),
                Some((S::Running, Some("attempt 1 ended with exit code 1; AWS Batch is trying again"))),
            ),
            // AWS Batch says it is over: the record stands.
            (Some(&failed), Some((S::Failed, Some("exit code 1".into()))), None),
            (Some(&ok), Some((S::Succeeded, None)), None),
            // AWS Batch does not know the job (expired): the record stands.
            (Some(&failed), None, None),
        ];
        for (r, batch, want) in cases {
            let got = retried_view(r, Some(1), batch.clone());
            let got = got.as_ref().map(|(s, d)| (*s, d.as_deref()));
            assert_eq!(got, want, "{batch:?}");
        }
    }
}
