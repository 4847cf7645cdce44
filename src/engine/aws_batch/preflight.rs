//! Before a batch is submitted: the queue exists, is ENABLED and VALID, and one of its compute
//! environments has an instance type that can hold the job. The same facts feed the RUNNABLE
//! diagnosis (`super::diagnose`).

use aws_sdk_batch::types::{CeState, CeStatus, CrType, JqState, JqStatus};
use serde::Serialize;

use super::diagnose::{EnvironmentFacts, QueueFacts};
use super::sizes::{fits, Size};
use super::{sdk, AwsBatch, BatchError};

/// What preflight found; `problems` empty means the batch can be submitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Preflight {
    pub problems: Vec<String>,
}

impl AwsBatch {
    /// The queue and its compute environments, as the diagnosis and preflight want them.
    pub async fn queue_facts(
        &self,
        queue: &str,
    ) -> Result<(Option<QueueFacts>, Vec<String>, Vec<EnvironmentFacts>), BatchError> {
        let out = self
            .batch
            .describe_job_queues()
            .job_queues(queue)
            .send()
            .await
            .map_err(|e| sdk("Batch DescribeJobQueues", e))?;
        let Some(q) = out
            .job_queues()
            .iter()
            .find(|q| q.job_queue_name() == Some(queue) && q.status() != Some(&JqStatus::Deleted))
        else {
            return Ok((None, Vec::new(), Vec::new()));
        };
        let facts = QueueFacts {
            name: queue.to_string(),
            enabled: q.state() == Some(&JqState::Enabled),
            valid: q.status() == Some(&JqStatus::Valid),
            status_reason: q.status_reason().map(str::to_string),
        };
        let names: Vec<String> = q
            .compute_environment_order()
            .iter()
            .map(|o| {
                let arn = o.compute_environment().unwrap_or_default();
                arn.rsplit('/').next().unwrap_or(arn).to_string()
            })
            .collect();
        let envs = self.environment_facts(&names).await?;
        Ok((Some(facts), names, envs))
    }

    pub(super) async fn environment_facts(
        &self,
        names: &[String],
    ) -> Result<Vec<EnvironmentFacts>, BatchError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .batch
            .describe_compute_environments()
            .set_compute_environments(Some(names.to_vec()))
            .send()
            .await
            .map_err(|e| sdk("Batch DescribeComputeEnvironments", e))?;
        Ok(out
            .compute_environments()
            .iter()
            .filter(|c| c.status() != Some(&CeStatus::Deleted))
            .map(|c| {
                let r = c.compute_resources();
                EnvironmentFacts {
                    name: c.compute_environment_name().unwrap_or_default().to_string(),
                    enabled: c.state() == Some(&CeState::Enabled),
                    valid: c.status() == Some(&CeStatus::Valid),
                    status_reason: c.status_reason().map(str::to_string),
                    instance_types: r.map(|r| r.instance_types().to_vec()).unwrap_or_default(),
                    max_vcpus: r
                        .and_then(|r| r.maxv_cpus())
                        .and_then(|v| u32::try_from(v).ok()),
                    desired_vcpus: r
                        .and_then(|r| r.desiredv_cpus())
                        .and_then(|v| u32::try_from(v).ok()),
                    spot: r.is_some_and(|r| r.r#type() == Some(&CrType::Spot)),
                    container_instances: None,
                }
            })
            .collect())
    }

    /// Before submitting: the queue exists and is VALID/ENABLED, and at least one of its enabled
    /// compute environments has an instance type that can hold a job of `size`.
    pub async fn preflight(&self, queue: &str, size: Size) -> Result<Preflight, BatchError> {
        let (q, _, envs) = self.queue_facts(queue).await?;
        let mut p = Preflight::default();
        let Some(q) = q else {
            p.problems.push(format!("job queue {queue} does not exist: run `run-render aws-batch setup --queue {queue}` or check --region"));
            return Ok(p);
        };
        if !q.enabled {
            p.problems.push(format!("job queue {queue} is DISABLED: enable it (aws batch update-job-queue --job-queue {queue} --state ENABLED)"));
        }
        if !q.valid {
            p.problems.push(format!(
                "job queue {queue} is not VALID: {}",
                q.status_reason.as_deref().unwrap_or("no reason given")
            ));
        }
        let usable: Vec<&EnvironmentFacts> = envs.iter().filter(|e| e.enabled && e.valid).collect();
        if usable.is_empty() {
            p.problems.push(format!(
                "job queue {queue} has no ENABLED, VALID compute environment"
            ));
        } else if !usable.iter().any(|e| {
            e.instance_types.is_empty()
                || e.instance_types
                    .iter()
                    .any(|t| fits(t, size) != Some(false))
        }) {
            let types: Vec<&str> = usable
                .iter()
                .flat_map(|e| e.instance_types.iter().map(String::as_str))
                .collect();
            p.problems.push(format!(
                "no instance type of the queue's compute environments ({}) can hold a job of {} vCPU / {} MiB: lower vcpus / memory-mib, or add a larger type",
                types.join(", "),
                size.vcpus,
                size.memory_mib
            ));
        }
        Ok(p)
    }
}
