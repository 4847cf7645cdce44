//! Submit a batch: one array job per [`ARRAY_MAX`](super::ARRAY_MAX) rows with an S3 manifest,
//! or a plain job for a batch of one (see [`super::plan`] for why).

use std::collections::BTreeMap;

use aws_sdk_batch::types::{ArrayProperties, ContainerOverrides, KeyValuePair};
use aws_sdk_s3::primitives::ByteStream;
use rtb_model::manifest::{Manifest, Row, MANIFEST_VAR};
use rtb_model::S3Url;
use serde::Serialize;

use super::definition::tags;
use super::plan::{job_name, manifest_url, submit_plan, SubmitPlan};
use super::register::Registered;
use super::{sdk, AwsBatch, BatchError};

/// One row of the batch, as the client resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitJob {
    /// The shared job id (`rtb_model::job_id`): the runner's RTB_JOB_ID and its records' name.
    pub job_id: String,
    /// A readable name; AWS Batch's job name is made from the batch's name and this.
    pub name: String,
    /// The runner's settings for this row (contract variables), over the definition's env.
    pub settings: BTreeMap<String, String>,
}

/// One row once submitted: which AWS Batch job runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SubmittedJob {
    pub job_id: String,
    /// AWS Batch's id: the job's, or an array child's `<parent>:<index>`.
    pub batch_job_id: String,
    /// The array parent's id, for an array child.
    pub array_job_id: Option<String>,
}

/// What was submitted: enough to follow and stop the batch later, from any client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Submitted {
    pub batch: String,
    pub queue: String,
    pub definition: String,
    /// The manifests, one per array job (none for a batch of one).
    pub manifests: Vec<S3Url>,
    /// In the order given.
    pub jobs: Vec<SubmittedJob>,
    /// Array parents: (id, size).
    pub arrays: Vec<(String, usize)>,
    /// SubmitJob calls made.
    pub calls: usize,
}

impl AwsBatch {
    /// Submit every job to `queue` with `definition`. With more than one job, the manifest is
    /// written to `<records><batch>/manifest.json` first (`records` is the run's manifests
    /// folder, [`manifests_folder`](super::plan::manifests_folder)), and each child reads its
    /// row from it.
    pub async fn submit(
        &self,
        batch: &str,
        jobs: &[SubmitJob],
        queue: &str,
        definition: &Registered,
        records: &S3Url,
    ) -> Result<Submitted, BatchError> {
        self.submit_as(
            submit_plan(jobs.len()),
            batch,
            jobs,
            queue,
            definition,
            records,
        )
        .await
    }

    /// As [`submit`](Self::submit), in the way given (the benchmark compares the two; a batch
    /// of one can only go per row).
    pub async fn submit_as(
        &self,
        how: SubmitPlan,
        batch: &str,
        jobs: &[SubmitJob],
        queue: &str,
        definition: &Registered,
        records: &S3Url,
    ) -> Result<Submitted, BatchError> {
        if jobs.is_empty() {
            return Err(BatchError::NoJobs);
        }
        let mut submitted = Submitted {
            batch: batch.to_string(),
            queue: queue.to_string(),
            definition: definition.arn.clone(),
            manifests: Vec::new(),
            jobs: Vec::with_capacity(jobs.len()),
            arrays: Vec::new(),
            calls: 0,
        };
        let tags: std::collections::HashMap<String, String> =
            tags(&self.owner, batch).into_iter().collect();
        let how = if jobs.len() < super::ARRAY_MIN {
            SubmitPlan::PerRow
        } else {
            how
        };
        match how {
            SubmitPlan::PerRow => {
                for job in jobs {
                    let overrides = ContainerOverrides::builder()
                        .set_environment(Some(env(&job.settings, Some(&job.job_id))))
                        .build();
                    let out = self
                        .batch
                        .submit_job()
                        .job_name(job_name(batch, &job.job_id))
                        .job_queue(queue)
                        .job_definition(&definition.arn)
                        .container_overrides(overrides)
                        .set_tags(Some(tags.clone()))
                        .propagate_tags(true)
                        .send()
                        .await
                        .map_err(|e| sdk("Batch SubmitJob", e))?;
                    submitted.calls += 1;
                    submitted.jobs.push(SubmittedJob {
                        job_id: job.job_id.clone(),
                        batch_job_id: job_id_of(out.job_id())?,
                        array_job_id: None,
                    });
                }
            }
            SubmitPlan::Array { chunks } => {
                for (k, chunk) in chunks.iter().enumerate() {
                    // One manifest per array (the child's index is its row).
                    let url = manifest_url(records, batch, k, chunks.len());
                    self.write_manifest(&url, &jobs[chunk.clone()]).await?;
                    let vars = BTreeMap::from([(MANIFEST_VAR.to_string(), url.to_string())]);
                    submitted.manifests.push(url);
                    let overrides = ContainerOverrides::builder()
                        .set_environment(Some(env(&vars, None)))
                        .build();
                    let out = self
                        .batch
                        .submit_job()
                        .job_name(job_name(batch, &format!("array-{k}")))
                        .job_queue(queue)
                        .job_definition(&definition.arn)
                        .array_properties(
                            ArrayProperties::builder().size(chunk.len() as i32).build(),
                        )
                        .container_overrides(overrides)
                        .set_tags(Some(tags.clone()))
                        .propagate_tags(true)
                        .send()
                        .await
                        .map_err(|e| sdk("Batch SubmitJob", e))?;
                    submitted.calls += 1;
                    let parent = job_id_of(out.job_id())?;
                    for (i, job) in jobs[chunk.clone()].iter().enumerate() {
                        submitted.jobs.push(SubmittedJob {
                            job_id: job.job_id.clone(),
                            batch_job_id: format!("{parent}:{i}"),
                            array_job_id: Some(parent.clone()),
                        });
                    }
                    submitted.arrays.push((parent, chunk.len()));
                }
            }
        }
        Ok(submitted)
    }

    async fn write_manifest(&self, url: &S3Url, jobs: &[SubmitJob]) -> Result<(), BatchError> {
        let manifest = Manifest {
            jobs: jobs
                .iter()
                .map(|j| Row {
                    job_id: j.job_id.clone(),
                    settings: j.settings.clone(),
                })
                .collect(),
        };
        let body = serde_json::to_vec(&manifest).unwrap_or_default();
        self.s3
            .put_object()
            .bucket(url.bucket())
            .key(url.key())
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| sdk("S3 PutObject (batch manifest)", e))?;
        Ok(())
    }
}

/// Settings as container overrides, with the job id as RTB_JOB_ID unless a setting gives it.
fn env(settings: &BTreeMap<String, String>, job_id: Option<&str>) -> Vec<KeyValuePair> {
    let mut vars = settings.clone();
    if let Some(id) = job_id {
        vars.entry(rtb_model::contract::JOB_ID.name.to_string())
            .or_insert_with(|| id.to_string());
    }
    vars.into_iter()
        .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
        .collect()
}

/// SubmitJob's answer always has the id; without one the job cannot be followed.
fn job_id_of(id: Option<&str>) -> Result<String, BatchError> {
    id.filter(|i| !i.is_empty())
        .map(str::to_string)
        .ok_or_else(|| BatchError::Setup("SubmitJob answered without a job id".into()))
}
