//! What AWS Batch says of a submitted job, for `status` and `logs --follow`.

use std::time::{Duration, SystemTime};

use super::BatchRecord;
use crate::cloud::Cloud;
use crate::engine::aws_batch::{diagnose, sizes, AwsBatch, JobState};

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
    let states = engine.states(&record.submitted).await.ok()?;
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
