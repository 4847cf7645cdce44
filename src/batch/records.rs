//! The pool's own records of who runs where (`rtb_model::records`): a pool instance's tags
//! are set once, at launch, so the job it runs now is written to S3 instead — the run's
//! record before anything is launched, an instance's assignment before its job is sent, the
//! attempt's record beside its log, and each end as the client sees it. Any workstation's
//! `status`, `list`, `cleanup` and `stop` read them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rtb_model::records::{Assignment, RunRecord, RECORDS_SCHEMA};
use rtb_model::{AttemptRecord, InstanceRecord, JobRecords, RunRecords};

use super::jobs::BatchJob;
use crate::cloud::{Cloud, CloudError, Select};
use crate::plan::Plan;

#[derive(Debug, thiserror::Error)]
#[error("could not write the batch's record {url}: {source}{}", hint(source))]
pub struct RecordError {
    pub url: String,
    pub source: CloudError,
}

fn hint(e: &CloudError) -> &'static str {
    if e.is("AccessDenied") || e.is("Forbidden") {
        "; the client needs s3:PutObject on the output bucket's _rtb-batch/* and */_rtb-job/* (ami/iam/client-policy.json)"
    } else {
        ""
    }
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// One batch run's records, written by its pool.
pub struct PoolRecords<'a> {
    cloud: &'a Cloud,
    run: RunRecords,
    batch: String,
    run_id: String,
    owner: String,
    /// Each instance's record, written whole on every change, one change at a time (two
    /// lanes of one instance must not race their PUTs).
    instances: Mutex<HashMap<String, Arc<tokio::sync::Mutex<InstanceRecord>>>>,
}

impl<'a> PoolRecords<'a> {
    /// The records of run `run_id` of `batch`, in the bucket of the first job's output.
    pub fn new(cloud: &'a Cloud, batch: &str, run_id: &str, first: &BatchJob) -> Option<Self> {
        let bucket = first.plan.output.as_ref()?.bucket().to_string();
        Some(PoolRecords {
            cloud,
            run: RunRecords::in_bucket(&bucket, batch, run_id)?,
            batch: batch.to_string(),
            run_id: run_id.to_string(),
            owner: crate::plan::owner(),
            instances: Mutex::new(HashMap::new()),
        })
    }

    pub fn root(&self) -> &RunRecords {
        &self.run
    }

    async fn put(&self, bucket: &str, key: &str, body: String) -> Result<(), RecordError> {
        self.cloud
            .put_bytes(bucket, key, body.into_bytes(), "application/json")
            .await
            .map_err(|source| RecordError {
                url: format!("s3://{bucket}/{key}"),
                source,
            })
    }

    /// The run's own record, written before anything is launched: a client that may not
    /// write records is refused here, not after its first instance is up.
    pub async fn start(&self) -> Result<(), RecordError> {
        let rec = RunRecord {
            schema: RECORDS_SCHEMA,
            batch: self.batch.clone(),
            run: self.run_id.clone(),
            owner: self.owner.clone(),
            client_host: crate::registry::host_name(),
            client_pid: Some(std::process::id()),
            started_at: now(),
        };
        let body = serde_json::to_string_pretty(&rec).unwrap_or_default();
        self.put(self.run.bucket(), &self.run.run_key(), body).await
    }

    /// An instance's record, made on first use with EC2's word on whether it is spot (one
    /// Describe per instance; what was asked for when EC2 does not say).
    pub async fn instance(
        &self,
        id: &str,
        spot_requested: bool,
    ) -> Arc<tokio::sync::Mutex<InstanceRecord>> {
        let known = self.lock().get(id).cloned();
        if let Some(r) = known {
            return r;
        }
        let ids = [id.to_string()];
        let spot = match self
            .cloud
            .tagged_instances(&Select {
                ids: &ids,
                ..Select::default()
            })
            .await
        {
            Ok(found) => found.first().map_or(spot_requested, |i| i.spot),
            Err(_) => spot_requested,
        };
        let rec = InstanceRecord::new(id, &self.batch, &self.run_id, &self.owner, spot);
        self.lock()
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(rec)))
            .clone()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<InstanceRecord>>>> {
        self.instances.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hand attempt `attempt` of `job` (planned as `plan`) to instance `id`: its record and
    /// the attempt's, written before the job is sent. Returns the attempt's record.
    pub async fn assign(
        &self,
        id: &str,
        job: &BatchJob,
        plan: &Plan,
        attempt: u32,
    ) -> Result<AttemptRecord, RecordError> {
        let spot_requested = plan.launch.spot;
        let instance = self.instance(id, spot_requested).await;
        let records = plan.work_records().cloned();
        let started_at = now();
        let rec = AttemptRecord {
            schema: RECORDS_SCHEMA,
            job_id: job.job_id.clone(),
            attempt,
            batch: self.batch.clone(),
            run: self.run_id.clone(),
            instance_id: id.to_string(),
            spot: instance.lock().await.spot,
            spot_requested,
            started_at: started_at.clone(),
            settings: job.what_it_runs(),
        };
        if let Some(r) = &records {
            self.put(r.bucket(), &r.attempt_key(), rec.to_json())
                .await?;
        }
        let mut inst = instance.lock().await;
        inst.jobs.push(Assignment {
            job_id: job.job_id.clone(),
            attempt,
            records: records
                .as_ref()
                .map(|r: &JobRecords| r.root().to_string())
                .unwrap_or_default(),
            started_at,
            ended_at: None,
            outcome: None,
            deadline: plan
                .deadline
                .map(|d| humantime::format_rfc3339_seconds(d).to_string()),
        });
        let body = inst.to_json();
        let written = self
            .put(self.run.bucket(), &self.run.instance_key(id), body)
            .await;
        if written.is_err() {
            // Not sent: the record must not claim it.
            inst.jobs.pop();
        }
        written.map(|()| rec)
    }

    /// The end of an attempt on instance `id`, as the client saw it.
    pub async fn ended(
        &self,
        id: &str,
        job_id: &str,
        attempt: u32,
        outcome: &str,
    ) -> Result<(), RecordError> {
        let instance = self.lock().get(id).cloned();
        let Some(instance) = instance else {
            return Ok(());
        };
        let mut inst = instance.lock().await;
        let Some(a) = inst.find_mut(job_id, attempt) else {
            return Ok(());
        };
        a.ended_at = Some(now());
        a.outcome = Some(outcome.to_string());
        let body = inst.to_json();
        self.put(self.run.bucket(), &self.run.instance_key(id), body)
            .await
    }
}
