//! Each attempt AWS Batch made of a job: when it started and stopped (DescribeJobs'
//! `attempts[]`) and the ECS container instance it ran on, and which EC2 instance that is
//! (ECS DescribeContainerInstances). What a job cost is worked out from these (crate::cost).

use std::collections::BTreeMap;
use std::time::SystemTime;

use aws_sdk_batch::types::JobDetail;

use super::state::{from_millis, JobState};
use super::{AwsBatch, BatchError, DESCRIBE_MAX};
use crate::cloud::cloud_error;

/// One attempt, as AWS Batch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRan {
    /// 1 for the first.
    pub number: u32,
    pub started_at: Option<SystemTime>,
    pub stopped_at: Option<SystemTime>,
    /// The ECS container instance's ARN; None when AWS Batch gives none (or a placeholder).
    pub container_instance: Option<String>,
}

/// A job's attempts, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobAttempts {
    pub batch_job_id: String,
    pub state: Option<JobState>,
    pub attempts: Vec<AttemptRan>,
}

/// A container instance ARN, or None for anything else (moto answers "TBD").
fn container_instance_arn(s: Option<&str>) -> Option<String> {
    s.filter(|a| a.starts_with("arn:") && a.contains(":container-instance/"))
        .map(str::to_string)
}

/// The attempts of one job from its DescribeJobs detail. A job that ended with no
/// `attempts[]` but its own start and stop times is one attempt of those times.
pub fn attempts_of(d: &JobDetail) -> JobAttempts {
    let mut attempts: Vec<AttemptRan> = d
        .attempts()
        .iter()
        .enumerate()
        .map(|(i, a)| AttemptRan {
            number: i as u32 + 1,
            started_at: from_millis(a.started_at()),
            stopped_at: from_millis(a.stopped_at()),
            container_instance: container_instance_arn(
                a.container().and_then(|c| c.container_instance_arn()),
            ),
        })
        .collect();
    if attempts.is_empty() && d.started_at().is_some() {
        attempts.push(AttemptRan {
            number: 1,
            started_at: from_millis(d.started_at()),
            stopped_at: from_millis(d.stopped_at()),
            container_instance: container_instance_arn(
                d.container().and_then(|c| c.container_instance_arn()),
            ),
        });
    }
    JobAttempts {
        batch_job_id: d.job_id().unwrap_or_default().to_string(),
        state: d.status().and_then(|s| JobState::parse(s.as_str())),
        attempts,
    }
}

/// The cluster named in a container instance ARN
/// (`arn:aws:ecs:REGION:ACCOUNT:container-instance/CLUSTER/ID`); None in the older format
/// without it (`container-instance/ID`).
pub fn cluster_of(arn: &str) -> Option<&str> {
    let rest = arn.split_once(":container-instance/")?.1;
    let (cluster, id) = rest.split_once('/')?;
    (!cluster.is_empty() && !id.is_empty()).then_some(cluster)
}

impl AwsBatch {
    /// The attempts of each job of `ids` (AWS Batch's ids) that AWS Batch still knows.
    pub async fn attempts(&self, ids: &[String]) -> Result<Vec<JobAttempts>, BatchError> {
        Ok(self
            .describe_jobs(ids)
            .await?
            .iter()
            .map(attempts_of)
            .collect())
    }

    /// The EC2 instance of each container instance ARN ECS still knows. An ARN without its
    /// cluster is looked up in `clusters` (the queue's compute environments' ECS clusters).
    pub async fn container_hosts(
        &self,
        arns: &[String],
        clusters: &[String],
    ) -> Result<BTreeMap<String, String>, BatchError> {
        let mut by_cluster: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
        for a in arns {
            by_cluster
                .entry(cluster_of(a).map(str::to_string))
                .or_default()
                .push(a.clone());
        }
        let mut found = BTreeMap::new();
        for (cluster, arns) in by_cluster {
            let candidates: Vec<String> = match cluster {
                Some(c) => vec![c],
                None => clusters.to_vec(),
            };
            for cluster in candidates {
                let left: Vec<String> = arns
                    .iter()
                    .filter(|a| !found.contains_key(*a))
                    .cloned()
                    .collect();
                for chunk in left.chunks(DESCRIBE_MAX) {
                    let out = self
                        .ecs
                        .describe_container_instances()
                        .cluster(&cluster)
                        .set_container_instances(Some(chunk.to_vec()))
                        .send()
                        .await
                        .map_err(|e| {
                            BatchError::Cloud(cloud_error("ECS DescribeContainerInstances", e))
                        })?;
                    for ci in out.container_instances() {
                        if let (Some(arn), Some(id)) =
                            (ci.container_instance_arn(), ci.ec2_instance_id())
                        {
                            found.insert(arn.to_string(), id.to_string());
                        }
                    }
                }
            }
        }
        Ok(found)
    }

    /// The ECS clusters of `queue`'s compute environments.
    pub async fn clusters(&self, queue: &str) -> Result<Vec<String>, BatchError> {
        let (_, _, envs) = self.queue_facts(queue).await?;
        Ok(envs.into_iter().filter_map(|e| e.ecs_cluster).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_batch::types::{AttemptContainerDetail, AttemptDetail, JobStatus};

    #[test]
    fn a_container_instance_arn_names_its_cluster_or_not() {
        let cases = [
            (
                "arn:aws:ecs:us-east-1:123456789012:container-instance/q-ce_Batch_1a2b/5f6e",
                Some("q-ce_Batch_1a2b"),
            ),
            (
                "arn:aws:ecs:us-east-1:123456789012:container-instance/5f6e",
                None,
            ),
            ("TBD", None),
        ];
        for (arn, want) in cases {
            assert_eq!(cluster_of(arn), want, "{arn}");
        }
    }

    #[test]
    fn attempts_come_from_describe_jobs_and_a_placeholder_instance_is_none() {
        let attempt = |start: i64, stop: i64, ci: &str| {
            AttemptDetail::builder()
                .started_at(start)
                .stopped_at(stop)
                .container(
                    AttemptContainerDetail::builder()
                        .container_instance_arn(ci)
                        .build(),
                )
                .build()
        };
        let arn = "arn:aws:ecs:us-east-1:1:container-instance/c_Batch_x/abc";
        let d = JobDetail::builder()
            .job_id("j1")
            .status(JobStatus::Succeeded)
            .attempts(attempt(1_000, 4_500, arn))
            .attempts(attempt(5_000, 9_000, "TBD"))
            .build();
        let got = attempts_of(&d);
        assert_eq!(got.state, Some(JobState::Succeeded));
        assert_eq!(got.attempts.len(), 2);
        assert_eq!(got.attempts[0].number, 1);
        assert_eq!(got.attempts[0].container_instance.as_deref(), Some(arn));
        assert_eq!(got.attempts[1].container_instance, None);
        assert_eq!(got.attempts[1].started_at, from_millis(Some(5_000)));
        // No attempts[], but the job's own times: one attempt.
        let d = JobDetail::builder()
            .job_id("j2")
            .status(JobStatus::Failed)
            .started_at(10)
            .stopped_at(20)
            .build();
        assert_eq!(attempts_of(&d).attempts.len(), 1);
        // Never started: none.
        let d = JobDetail::builder()
            .job_id("j3")
            .status(JobStatus::Failed)
            .build();
        assert!(attempts_of(&d).attempts.is_empty());
    }
}
