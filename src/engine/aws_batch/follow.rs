//! Following a submitted batch: each job's state, reason and exit code.
//!
//! ListJobs is the source: it carries `container.exitCode` (moto's DescribeJobs never does)
//! and lists a whole array's children in one call per state, where DescribeJobs takes 100 ids
//! a call. Plain jobs are found by the batch's name prefix on the queue (one listing of every
//! state); DescribeJobs only fills in a job the listing missed.

use std::collections::HashMap;

use aws_sdk_batch::types::{JobStatus as AwsJobStatus, JobSummary, KeyValuesPair};
use serde::Serialize;

use super::plan::name_prefix;
use super::state::{from_millis, JobState, JobStatus, ALL};
use super::submit::Submitted;
use super::{sdk, AwsBatch, BatchError};

/// One row of a batch and what AWS Batch says of it (`None`: not found, e.g. expired: AWS keeps
/// finished jobs for about a week).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobOfBatch {
    pub job_id: String,
    pub status: Option<JobStatus>,
}

fn status_of(s: &JobSummary) -> Option<JobStatus> {
    Some(JobStatus {
        batch_job_id: s.job_id()?.to_string(),
        name: s.job_name().unwrap_or_default().to_string(),
        state: JobState::parse(s.status()?.as_str())?,
        reason: s.status_reason().map(str::to_string),
        exit_code: s.container().and_then(|c| c.exit_code()),
        container_reason: s.container().and_then(|c| c.reason()).map(str::to_string),
        created_at: from_millis(s.created_at()),
        started_at: from_millis(s.started_at()),
        stopped_at: from_millis(s.stopped_at()),
    })
}

impl AwsBatch {
    /// Every job of `submitted`, in its order, with its state.
    pub async fn states(&self, submitted: &Submitted) -> Result<Vec<JobOfBatch>, BatchError> {
        let mut found: HashMap<String, JobStatus> = HashMap::new();
        for (parent, _) in &submitted.arrays {
            for j in self.children(parent).await? {
                found.insert(j.batch_job_id.clone(), j);
            }
        }
        let singles: Vec<&str> = submitted
            .jobs
            .iter()
            .filter(|j| j.array_job_id.is_none())
            .map(|j| j.batch_job_id.as_str())
            .collect();
        if !singles.is_empty() {
            for j in self.by_name(&submitted.queue, &submitted.batch).await? {
                found.insert(j.batch_job_id.clone(), j);
            }
            let missing: Vec<&str> = singles
                .iter()
                .copied()
                .filter(|id| !found.contains_key(*id))
                .collect();
            for j in self.describe(&missing).await? {
                found.insert(j.batch_job_id.clone(), j);
            }
        }
        Ok(submitted
            .jobs
            .iter()
            .map(|j| JobOfBatch {
                job_id: j.job_id.clone(),
                status: found.get(&j.batch_job_id).cloned(),
            })
            .collect())
    }

    /// An array's children, one ListJobs (and its pages) per state.
    pub async fn children(&self, array_job_id: &str) -> Result<Vec<JobStatus>, BatchError> {
        let mut out = Vec::new();
        for state in ALL {
            let mut pages = self
                .batch
                .list_jobs()
                .array_job_id(array_job_id)
                .job_status(AwsJobStatus::from(state.as_aws()))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| sdk("Batch ListJobs", e))?;
                out.extend(page.job_summary_list().iter().filter_map(status_of));
            }
        }
        Ok(out)
    }

    /// Every job on `queue` whose name is the batch's (any state: with a filter, ListJobs
    /// ignores the status and lists all).
    pub async fn by_name(&self, queue: &str, batch: &str) -> Result<Vec<JobStatus>, BatchError> {
        let filter = KeyValuesPair::builder()
            .name("JOB_NAME")
            .values(format!("{}*", name_prefix(batch)))
            .build();
        let mut pages = self
            .batch
            .list_jobs()
            .job_queue(queue)
            .filters(filter)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk("Batch ListJobs", e))?;
            out.extend(page.job_summary_list().iter().filter_map(status_of));
        }
        Ok(out)
    }

    async fn describe(&self, ids: &[&str]) -> Result<Vec<JobStatus>, BatchError> {
        Ok(self
            .describe_jobs(ids)
            .await?
            .iter()
            .filter_map(|d| {
                let state = JobState::parse(d.status().map(|s| s.as_str()).unwrap_or_default())?;
                Some(JobStatus {
                    batch_job_id: d.job_id().unwrap_or_default().to_string(),
                    name: d.job_name().unwrap_or_default().to_string(),
                    state,
                    reason: d.status_reason().map(str::to_string),
                    exit_code: d.container().and_then(|c| c.exit_code()),
                    container_reason: d.container().and_then(|c| c.reason()).map(str::to_string),
                    created_at: from_millis(d.created_at()),
                    started_at: from_millis(d.started_at()),
                    stopped_at: from_millis(d.stopped_at()),
                })
            })
            .collect())
    }
}
