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
    /// The jobs' role: the queue's job role, in the queue's account.
    pub job_role: Option<String>,
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
            arn: q.job_queue_arn().map(str::to_string),
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
                    amis: r
                        .map(|r| {
                            r.ec2_configuration()
                                .iter()
                                .filter_map(|c| c.image_id_override())
                                // Older environments name it in the deprecated imageId.
                                .chain(
                                    #[allow(deprecated)]
                                    r.image_id(),
                                )
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default(),
                    ecs_cluster: c.ecs_cluster_arn().map(str::to_string),
                }
            })
            .collect())
    }

    /// Before submitting: the queue exists and is VALID/ENABLED, at least one of its enabled
    /// compute environments has an instance type that can hold a job of `size`, and, when the
    /// jobs name an `ami`, they are the instances' (AWS Batch launches them, not the jobs).
    pub async fn preflight(
        &self,
        queue: &str,
        size: Size,
        ami: Option<&str>,
    ) -> Result<Preflight, BatchError> {
        let (q, _, envs) = self.queue_facts(queue).await?;
        let mut p = Preflight::default();
        let Some(q) = q else {
            p.problems.push(format!("job queue {queue} does not exist: run `run-render aws-batch setup --queue {queue}` or check --region"));
            return Ok(p);
        };
        p.job_role = q
            .arn
            .as_deref()
            .and_then(|arn| super::job_role_arn(arn, queue));
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
        if let Some(problem) = ami.and_then(|a| ami_problem(a, &usable)) {
            p.problems.push(problem);
        }
        Ok(p)
    }
}

/// A job's `ami` that no usable compute environment launches: AWS Batch would run the job on
/// another image than the one the user named. `None` when one of them uses it.
fn ami_problem(ami: &str, usable: &[&EnvironmentFacts]) -> Option<String> {
    if usable.is_empty() || usable.iter().any(|e| e.amis.iter().any(|a| a == ami)) {
        return None;
    }
    let theirs: Vec<String> = usable
        .iter()
        .map(|e| match e.amis.as_slice() {
            [] => format!("{}: the ECS-optimized default", e.name),
            amis => format!("{}: {}", e.name, amis.join(", ")),
        })
        .collect();
    Some(format!(
        "ami {ami}: AWS Batch starts the queue's instances from its compute environments' AMI ({}), not the job's; leave ami out of [job], or set the queue up with `run-render aws-batch setup --ami {ami}`",
        theirs.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str, amis: &[&str]) -> EnvironmentFacts {
        EnvironmentFacts {
            name: name.into(),
            amis: amis.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_jobs_ami_must_be_one_a_compute_environment_launches() {
        let a = env("q-ce", &["ami-1"]);
        let b = env("other-ce", &[]);
        let cases: &[(&str, Vec<&EnvironmentFacts>, Option<&str>)] = &[
            ("ami-1", vec![&a], None),
            ("ami-1", vec![&b, &a], None),
            ("ami-2", vec![&a], Some("ami ami-2: AWS Batch starts the queue's instances from its compute environments' AMI (q-ce: ami-1), not the job's")),
            ("ami-2", vec![&b], Some("(other-ce: the ECS-optimized default)")),
            // No usable environment: preflight says so already.
            ("ami-2", vec![], None),
        ];
        for (ami, envs, want) in cases {
            let got = ami_problem(ami, envs);
            match want {
                None => assert_eq!(got, None, "{ami}"),
                Some(part) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(part)),
                    "{ami}: {got:?}"
                ),
            }
        }
    }
}
