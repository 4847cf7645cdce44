//! A batch's jobs on a shared queue, found by name and told apart by owner, and ended.
//!
//! Jobs are found from AWS Batch itself (a ListJobs by the batch's name prefix, then one
//! DescribeJobs per 100 top-level jobs for their tags), not from a local record: another
//! workstation's submission, or one whose client died before it recorded anything, is found
//! too. Only the caller's jobs (`rtb:owner`) count: a colleague's batch of the same name on
//! the same queue is left alone.
//!
//! Stopping is one TerminateJob per array job or plain job: AWS Batch passes an array
//! parent's on to its children (cancelling those not started, terminating those that run,
//! STARTING included, where CancelJob does nothing), so 10,000 rows are one call, not
//! 10,000 that the first throttle would cut short. Then the end is confirmed: children still
//! running after a while are ended one by one, and what never ends is named.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_batch::types::JobStatus as AwsJobStatus;
use serde::Serialize;

use super::definition::{OWNER_TAG, RUN_TAG, TOOL, TOOL_TAG};
use super::state::JobState;
use super::{sdk, AwsBatch, BatchError, DESCRIBE_MAX};

/// How long the end of terminated jobs is waited for: AWS Batch stops a running container
/// (SIGTERM, then SIGKILL 30 s later) and reports it FAILED within about a minute.
const CONFIRM: Duration = Duration::from_secs(3 * 60);
/// After this long, children an array's TerminateJob has not ended yet are ended one by one.
const CHILDREN_AFTER: Duration = Duration::from_secs(45);
const POLL: Duration = Duration::from_secs(2);

/// A job of a batch as the queue lists it: a plain job, or an array's parent (never a child).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopJob {
    pub id: String,
    pub name: String,
    pub state: JobState,
    /// Its tags: `rtb:tool`, `rtb:owner`, `rtb:batch`, `rtb:run`.
    #[serde(skip)]
    pub tags: BTreeMap<String, String>,
    /// An array parent's children: (how many, how many not ended).
    pub children: Option<(usize, usize)>,
}

impl TopJob {
    /// Not over: a plain job not ended, or an array with a child not ended. (moto leaves a
    /// parent SUBMITTED for ever, and AWS marks it ended only once every child is: the
    /// children say.)
    pub fn live(&self) -> bool {
        match self.children {
            Some((size, live)) if size > 0 => live > 0,
            _ => !self.state.is_final(),
        }
    }

    pub fn owner(&self) -> Option<&str> {
        self.tags.get(OWNER_TAG).map(String::as_str)
    }

    pub fn run(&self) -> Option<&str> {
        self.tags.get(RUN_TAG).map(String::as_str)
    }

    /// Ours to end: made by run-render for `owner`.
    pub fn belongs_to(&self, owner: &str) -> bool {
        self.tags.get(TOOL_TAG).map(String::as_str) == Some(TOOL) && self.owner() == Some(owner)
    }
}

/// What [`AwsBatch::stop`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stopped {
    /// The arrays and plain jobs TerminateJob was called for.
    pub terminated: Vec<String>,
    /// Children ended one by one because their array's end had not reached them.
    pub children_ended: Vec<String>,
    /// Still not ended when the wait was over.
    pub still_live: Vec<String>,
    /// Live jobs of this batch's name on the queue that belong to others: left alone.
    pub others: Vec<String>,
    /// Batch calls made.
    pub calls: usize,
}

/// Which ids' jobs to end: the caller's live ones. Others' live ones are reported.
pub fn to_stop<'a>(jobs: &'a [TopJob], owner: &str) -> (Vec<&'a TopJob>, Vec<&'a TopJob>) {
    jobs.iter()
        .filter(|j| j.live())
        .partition(|j| j.belongs_to(owner))
}

impl AwsBatch {
    /// Every top-level job on `queue` named as batch `batch`'s, any state, with its tags.
    pub async fn batch_jobs(&self, queue: &str, batch: &str) -> Result<Vec<TopJob>, BatchError> {
        let mut calls = 0;
        self.batch_jobs_counted(queue, batch, &mut calls).await
    }

    async fn batch_jobs_counted(
        &self,
        queue: &str,
        batch: &str,
        calls: &mut usize,
    ) -> Result<Vec<TopJob>, BatchError> {
        let listed = self.by_name(queue, batch).await?;
        *calls += 1;
        // AWS lists parents on the queue; moto lists the children (`<parent>:<n>`) too.
        let mut ids: Vec<String> = listed
            .iter()
            .map(|j| {
                j.batch_job_id
                    .split_once(':')
                    .map_or(j.batch_job_id.clone(), |(parent, _)| parent.to_string())
            })
            .collect();
        ids.sort();
        ids.dedup();
        self.describe_top(&ids, calls).await
    }

    /// The caller's live jobs of batch `batch` on `queue`: a submission still at work.
    pub async fn live_jobs(&self, queue: &str, batch: &str) -> Result<Vec<TopJob>, BatchError> {
        let jobs = self.batch_jobs(queue, batch).await?;
        let (mine, _) = to_stop(&jobs, &self.owner);
        Ok(mine.into_iter().cloned().collect())
    }

    /// Top-level jobs by id, with their tags and, for arrays, their children's counts.
    async fn describe_top(
        &self,
        ids: &[String],
        calls: &mut usize,
    ) -> Result<Vec<TopJob>, BatchError> {
        let mut out = Vec::with_capacity(ids.len());
        let described = self.describe_jobs(ids).await?;
        *calls += ids.len().div_ceil(DESCRIBE_MAX);
        for d in &described {
            let Some(state) = d.status().and_then(|s| JobState::parse(s.as_str())) else {
                continue;
            };
            let children = d.array_properties().and_then(|a| {
                let summary = a.status_summary()?;
                let size = a
                    .size()
                    .and_then(|s| usize::try_from(s).ok())
                    .unwrap_or_else(|| summary.values().map(|n| *n as usize).sum());
                let live = summary
                    .iter()
                    .filter(|(s, _)| JobState::parse(s).is_some_and(|s| !s.is_final()))
                    .map(|(_, n)| usize::try_from(*n).unwrap_or(0))
                    .sum();
                Some((size, live))
            });
            out.push(TopJob {
                id: d.job_id().unwrap_or_default().to_string(),
                name: d.job_name().unwrap_or_default().to_string(),
                state,
                tags: d
                    .tags()
                    .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default(),
                children,
            });
        }
        Ok(out)
    }

    /// End the caller's unfinished jobs of batch `batch` on `queue` (see the module's docs),
    /// and wait until AWS Batch says they ended. `reason` is shown by AWS Batch.
    pub async fn stop(
        &self,
        queue: &str,
        batch: &str,
        reason: &str,
    ) -> Result<Stopped, BatchError> {
        let mut stopped = Stopped::default();
        let jobs = self
            .batch_jobs_counted(queue, batch, &mut stopped.calls)
            .await?;
        let (mine, others) = to_stop(&jobs, &self.owner);
        stopped.others = others.iter().map(|j| j.id.clone()).collect();
        for j in &mine {
            self.terminate(&j.id, reason).await?;
            stopped.calls += 1;
            stopped.terminated.push(j.id.clone());
        }
        let mut waiting: Vec<String> = mine.iter().map(|j| j.id.clone()).collect();
        let start = Instant::now();
        let mut children_ended = false;
        while !waiting.is_empty() {
            tokio::time::sleep(POLL).await;
            let now = self.describe_top(&waiting, &mut stopped.calls).await?;
            waiting = now
                .iter()
                .filter(|j| j.live())
                .map(|j| j.id.clone())
                .collect();
            if waiting.is_empty() {
                break;
            }
            if !children_ended && start.elapsed() >= CHILDREN_AFTER {
                // An array's end has not reached some children: end those themselves.
                children_ended = true;
                for parent in now.iter().filter(|j| j.live() && j.children.is_some()) {
                    for child in self.live_children(&parent.id, &mut stopped.calls).await? {
                        self.terminate(&child, reason).await?;
                        stopped.calls += 1;
                        stopped.children_ended.push(child);
                    }
                }
            }
            if start.elapsed() >= CONFIRM {
                stopped.still_live = waiting;
                break;
            }
        }
        Ok(stopped)
    }

    /// An array's children that have not ended, one ListJobs per unfinished state.
    async fn live_children(
        &self,
        array_job_id: &str,
        calls: &mut usize,
    ) -> Result<Vec<String>, BatchError> {
        let mut out = Vec::new();
        for state in super::state::ALL.iter().filter(|s| !s.is_final()) {
            let mut pages = self
                .batch
                .list_jobs()
                .array_job_id(array_job_id)
                .job_status(AwsJobStatus::from(state.as_aws()))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| sdk("Batch ListJobs", e))?;
                *calls += 1;
                out.extend(
                    page.job_summary_list()
                        .iter()
                        .filter(|j| {
                            j.status()
                                .and_then(|s| JobState::parse(s.as_str()))
                                .is_some_and(|s| !s.is_final())
                        })
                        .filter_map(|j| j.job_id().map(str::to_string)),
                );
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// End one job (AWS Batch cancels one not yet started); `reason` is shown by AWS Batch.
    pub async fn terminate(&self, id: &str, reason: &str) -> Result<(), BatchError> {
        self.batch
            .terminate_job()
            .job_id(id)
            .reason(reason)
            .send()
            .await
            .map_err(|e| sdk("Batch TerminateJob", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, owner: &str, state: JobState, children: Option<(usize, usize)>) -> TopJob {
        TopJob {
            id: id.into(),
            name: "rtb-b--array-0".into(),
            state,
            tags: BTreeMap::from([
                (TOOL_TAG.to_string(), TOOL.to_string()),
                (OWNER_TAG.to_string(), owner.to_string()),
            ]),
            children,
        }
    }

    #[test]
    fn only_the_callers_live_jobs_are_stopped_and_arrays_live_by_their_children() {
        use JobState::*;
        let jobs = vec![
            // moto: a parent SUBMITTED for ever, its children all ended.
            job("a1", "ann", Submitted, Some((4, 0))),
            job("a2", "ann", Submitted, Some((4, 1))),
            job("a3", "ann", Failed, None),
            job("a4", "ann", Starting, None),
            job("b1", "bob", Running, None),
            job("b2", "bob", Succeeded, None),
        ];
        let (mine, others) = to_stop(&jobs, "ann");
        let ids = |v: Vec<&TopJob>| v.iter().map(|j| j.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(mine), ["a2", "a4"]);
        assert_eq!(ids(others), ["b1"]);
        // Not made by run-render: never ours, whatever its owner tag says.
        let mut foreign = job("x", "ann", Running, None);
        foreign.tags.remove(TOOL_TAG);
        assert!(!foreign.belongs_to("ann"));
    }
}
