//! Who runs where on a batch's pool: the records the batch client writes to S3, so that any
//! workstation (not only the one whose registry saw the batch) can tell which job a pool
//! instance runs now, and later tools (costs, a report's timeline) which job ran where, when.
//!
//! A pool instance's tags cannot change after launch (the client policy allows CreateTags only
//! inside RunInstances), so its tags name the batch run and where these records are, and the
//! records say the rest:
//!
//! ```text
//! <bucket>/_rtb-batch/<batch>/<run>/run.json                  the run: owner, client host/pid
//! <bucket>/_rtb-batch/<batch>/<run>/instances/<id>.json       one pool instance: its jobs, in order
//! <output>/_rtb-job/<job>/<run>-a<n>/attempt.json             one attempt: its instance, what it ran
//! ```
//!
//! `<bucket>` is the first row's output bucket; an instance's `rtb:records` tag names the run's
//! folder. The client writes an assignment before it sends the job to the instance, and its
//! end after; the runner's `result.json` says a job ended even when the client died first.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{JobRecords, S3Url};

/// The folder, at the top of a bucket, that holds batch runs' records.
pub const BATCH_DIR: &str = "_rtb-batch";
/// The name of an attempt's record inside its records folder.
pub const ATTEMPT_NAME: &str = "attempt.json";
/// Version of these records' shape; bumped only for incompatible changes.
pub const RECORDS_SCHEMA: u32 = 1;

/// Where one run of a batch keeps its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecords {
    root: S3Url,
}

impl RunRecords {
    /// The folder of run `run` of batch `batch` in `bucket`.
    pub fn in_bucket(bucket: &str, batch: &str, run: &str) -> Option<RunRecords> {
        S3Url::new(bucket, &format!("{BATCH_DIR}/{batch}/{run}/"))
            .ok()
            .map(|root| RunRecords { root })
    }

    /// A run's folder given directly (a pool instance's `rtb:records` tag).
    pub fn at(root: S3Url) -> RunRecords {
        let root = S3Url::new(root.bucket(), &root.dir_prefix()).unwrap_or(root);
        RunRecords { root }
    }

    pub fn root(&self) -> &S3Url {
        &self.root
    }

    pub fn bucket(&self) -> &str {
        self.root.bucket()
    }

    pub fn run_key(&self) -> String {
        format!("{}run.json", self.root.dir_prefix())
    }

    pub fn instance_key(&self, instance_id: &str) -> String {
        format!("{}instances/{instance_id}.json", self.root.dir_prefix())
    }
}

impl JobRecords {
    /// The key of this attempt's record (a batch attempt's folder).
    pub fn attempt_key(&self) -> String {
        format!("{}{ATTEMPT_NAME}", self.root().dir_prefix())
    }
}

/// One run of a batch: who started it, from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub schema: u32,
    pub batch: String,
    pub run: String,
    pub owner: String,
    pub client_host: Option<String>,
    pub client_pid: Option<u32>,
    /// RFC 3339 UTC.
    pub started_at: String,
}

/// One job handed to a pool instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub job_id: String,
    pub attempt: u32,
    /// The attempt's records folder (log chunks, result.json, attempt.json).
    pub records: String,
    /// RFC 3339 UTC: handed over (before the job was sent), and ended, once the client saw it.
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// How the client saw it end (the summary's outcome word).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// RFC 3339 UTC: when this job's deadline powers the instance off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
}

/// A pool instance and every job handed to it, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub schema: u32,
    pub instance_id: String,
    pub batch: String,
    pub run: String,
    pub owner: String,
    /// Whether it is a spot instance (EC2's own word for it, not what was asked for).
    pub spot: bool,
    pub jobs: Vec<Assignment>,
}

impl InstanceRecord {
    pub fn new(instance_id: &str, batch: &str, run: &str, owner: &str, spot: bool) -> Self {
        InstanceRecord {
            schema: RECORDS_SCHEMA,
            instance_id: instance_id.to_string(),
            batch: batch.to_string(),
            run: run.to_string(),
            owner: owner.to_string(),
            spot,
            jobs: Vec::new(),
        }
    }

    /// The jobs the client has not seen end (the runner's result may say more).
    pub fn unended(&self) -> impl Iterator<Item = &Assignment> {
        self.jobs.iter().filter(|a| a.ended_at.is_none())
    }

    /// The assignment of `job_id`'s attempt `attempt`.
    pub fn find_mut(&mut self, job_id: &str, attempt: u32) -> Option<&mut Assignment> {
        self.jobs
            .iter_mut()
            .rev()
            .find(|a| a.job_id == job_id && a.attempt == attempt)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// One attempt of a batch job: where it ran and what it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub schema: u32,
    pub job_id: String,
    pub attempt: u32,
    pub batch: String,
    pub run: String,
    pub instance_id: String,
    /// The instance is spot (EC2's word), and whether spot was asked for.
    pub spot: bool,
    pub spot_requested: bool,
    /// RFC 3339 UTC, when it was handed to the instance.
    pub started_at: String,
    /// What the row asked for: the job's settings (image, volumes, the runner's environment
    /// without what differs between attempts). `--resume` runs a job again when they changed.
    pub settings: BTreeMap<String, String>,
}

impl AttemptRecord {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_records_round_trip() {
        let run = RunRecords::in_bucket("lab-renders", "vwcc2", "r20261201T101500").unwrap();
        assert_eq!(
            run.root().to_string(),
            "s3://lab-renders/_rtb-batch/vwcc2/r20261201T101500/"
        );
        assert_eq!(
            run.instance_key("i-1"),
            "_rtb-batch/vwcc2/r20261201T101500/instances/i-1.json"
        );
        assert_eq!(RunRecords::at(run.root().clone()), run);
        let attempt = JobRecords::at("s3://out/3/_rtb-job/b-3/r1-a2".parse().unwrap());
        assert_eq!(attempt.attempt_key(), "3/_rtb-job/b-3/r1-a2/attempt.json");

        let mut rec = InstanceRecord::new("i-1", "vwcc2", "r1", "ana", false);
        for (job, attempt) in [("b-1", 1), ("b-2", 1)] {
            rec.jobs.push(Assignment {
                job_id: job.into(),
                attempt,
                records: format!("s3://out/x/_rtb-job/{job}/r1-a{attempt}/"),
                started_at: "2026-12-01T10:15:00Z".into(),
                ended_at: None,
                outcome: None,
                deadline: None,
            });
        }
        let a = rec.find_mut("b-1", 1).unwrap();
        a.ended_at = Some("2026-12-01T10:16:00Z".into());
        a.outcome = Some("succeeded".into());
        let back: InstanceRecord = serde_json::from_str(&rec.to_json()).unwrap();
        assert_eq!(back, rec);
        let unended: Vec<&str> = back.unended().map(|a| a.job_id.as_str()).collect();
        assert_eq!(unended, ["b-2"]);
    }
}
