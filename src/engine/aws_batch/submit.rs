//! Submit a batch: one array job per [`ARRAY_MAX`](super::ARRAY_MAX) rows with an S3 manifest,
//! or a plain job for a batch of one (see [`super::plan`] for why).

use std::collections::BTreeMap;

use aws_sdk_batch::types::{ArrayProperties, ContainerOverrides, KeyValuePair};
use aws_sdk_s3::primitives::ByteStream;
use rtb_model::manifest::{Manifest, Row, MANIFEST_VAR};
use rtb_model::S3Url;
use serde::Serialize;

use super::definition::{tags, RUN_TAG};
use super::plan::{job_name, manifest_url, submit_plan, SubmitPlan};
use super::register::Registered;
use super::stop::TopJob;
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
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

/// A submission that stopped partway: what was submitted before `error` (those jobs run).
#[derive(Debug)]
pub struct Partial {
    pub submitted: Submitted,
    pub error: BatchError,
}

/// How many times one SubmitJob is tried (throttled, or unanswered and not found).
const SUBMIT_TRIES: u32 = 4;

/// What one SubmitJob asks for, so that it can be asked again identically.
struct Request<'a> {
    name: String,
    queue: &'a str,
    definition: &'a str,
    env: Vec<KeyValuePair>,
    array_size: Option<usize>,
    tags: &'a std::collections::HashMap<String, String>,
}

impl AwsBatch {
    /// Submit every job to `queue` with `definition`, as run `run` of batch `batch` (its
    /// jobs are tagged `rtb:run`). With more than one job, the manifest is written to
    /// `<records><batch>/manifest.json` first (`records` is the run's manifests folder,
    /// [`manifests_folder`](super::plan::manifests_folder)), and each child reads its row
    /// from it.
    pub async fn submit(
        &self,
        batch: &str,
        run: &str,
        jobs: &[SubmitJob],
        queue: &str,
        definition: &Registered,
        records: &S3Url,
    ) -> Result<Submitted, Partial> {
        self.submit_as(
            submit_plan(jobs.len()),
            batch,
            run,
            jobs,
            queue,
            definition,
            records,
        )
        .await
    }

    /// As [`submit`](Self::submit), in the way given (the benchmark compares the two; a batch
    /// of one can only go per row).
    #[allow(clippy::too_many_arguments)]
    pub async fn submit_as(
        &self,
        how: SubmitPlan,
        batch: &str,
        run: &str,
        jobs: &[SubmitJob],
        queue: &str,
        definition: &Registered,
        records: &S3Url,
    ) -> Result<Submitted, Partial> {
        let mut submitted = Submitted {
            batch: batch.to_string(),
            queue: queue.to_string(),
            definition: definition.arn.clone(),
            manifests: Vec::new(),
            jobs: Vec::with_capacity(jobs.len()),
            arrays: Vec::new(),
            calls: 0,
        };
        if jobs.is_empty() {
            return Err(Partial {
                submitted,
                error: BatchError::NoJobs,
            });
        }
        let mut tags: std::collections::HashMap<String, String> =
            tags(&self.owner, batch).into_iter().collect();
        tags.insert(RUN_TAG.to_string(), run.to_string());
        let how = if jobs.len() < super::ARRAY_MIN {
            SubmitPlan::PerRow
        } else {
            how
        };
        match how {
            SubmitPlan::PerRow => {
                for job in jobs {
                    let request = Request {
                        name: job_name(batch, &job.job_id),
                        queue,
                        definition: &definition.arn,
                        env: env(&job.settings, Some(&job.job_id)),
                        array_size: None,
                        tags: &tags,
                    };
                    let id = match self.submit_once(&request, run, &mut submitted.calls).await {
                        Ok(id) => id,
                        Err(error) => return Err(Partial { submitted, error }),
                    };
                    submitted.jobs.push(SubmittedJob {
                        job_id: job.job_id.clone(),
                        batch_job_id: id,
                        array_job_id: None,
                    });
                }
            }
            SubmitPlan::Array { chunks } => {
                for (k, chunk) in chunks.iter().enumerate() {
                    // One manifest per array (the child's index is its row).
                    let url = manifest_url(records, batch, k, chunks.len());
                    if let Err(error) = self.write_manifest(&url, &jobs[chunk.clone()]).await {
                        return Err(Partial { submitted, error });
                    }
                    let vars = BTreeMap::from([(MANIFEST_VAR.to_string(), url.to_string())]);
                    submitted.manifests.push(url);
                    let request = Request {
                        name: job_name(batch, &format!("array-{k}")),
                        queue,
                        definition: &definition.arn,
                        env: env(&vars, None),
                        array_size: Some(chunk.len()),
                        tags: &tags,
                    };
                    let parent = match self.submit_once(&request, run, &mut submitted.calls).await {
                        Ok(id) => id,
                        Err(error) => return Err(Partial { submitted, error }),
                    };
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

    /// One SubmitJob, at most once. SubmitJob has no client token: an answer lost on the way
    /// back (the job may exist) is first looked up by the job's name and run on the queue,
    /// and asked again only when no such job is there; the SDK's own retries are off here,
    /// since they would submit the same rows twice, into the same outputs.
    async fn submit_once(
        &self,
        r: &Request<'_>,
        run: &str,
        calls: &mut usize,
    ) -> Result<String, BatchError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .batch
                .submit_job()
                .job_name(&r.name)
                .job_queue(r.queue)
                .job_definition(r.definition)
                .container_overrides(
                    ContainerOverrides::builder()
                        .set_environment(Some(r.env.clone()))
                        .build(),
                )
                .set_tags(Some(r.tags.clone()))
                .propagate_tags(true);
            if let Some(size) = r.array_size {
                req = req.array_properties(ArrayProperties::builder().size(size as i32).build());
            }
            let sent = req
                .customize()
                .config_override(
                    aws_sdk_batch::config::Builder::default()
                        .retry_config(aws_config::retry::RetryConfig::disabled()),
                )
                .send()
                .await;
            *calls += 1;
            let e = match sent {
                Ok(out) => return job_id_of(out.job_id()),
                Err(e) => crate::cloud::cloud_error("Batch SubmitJob", e),
            };
            if e.may_have_run() {
                if let Some(id) = self.find_submitted(r.queue, &r.name, run).await? {
                    return Ok(id);
                }
            }
            if !e.is_transient() || attempt >= SUBMIT_TRIES {
                return Err(BatchError::Cloud(e));
            }
            tokio::time::sleep(std::time::Duration::from_millis(500 << attempt)).await;
        }
    }

    /// The job named `name` of run `run` on `queue`, if SubmitJob made it.
    async fn find_submitted(
        &self,
        queue: &str,
        name: &str,
        run: &str,
    ) -> Result<Option<String>, BatchError> {
        let filter = aws_sdk_batch::types::KeyValuesPair::builder()
            .name("JOB_NAME")
            .values(name)
            .build();
        let listed = self
            .batch
            .list_jobs()
            .job_queue(queue)
            .filters(filter)
            .send()
            .await
            .map_err(|e| sdk("Batch ListJobs", e))?;
        let mut ids: Vec<String> = listed
            .job_summary_list()
            .iter()
            .filter(|j| j.job_name() == Some(name))
            .filter_map(|j| j.job_id())
            .filter(|id| !id.contains(':'))
            .map(str::to_string)
            .collect();
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            return Ok(None);
        }
        let described = self
            .batch
            .describe_jobs()
            .set_jobs(Some(ids))
            .send()
            .await
            .map_err(|e| sdk("Batch DescribeJobs", e))?;
        Ok(described
            .jobs()
            .iter()
            .find(|j| {
                j.tags()
                    .and_then(|t| t.get(RUN_TAG))
                    .is_some_and(|r| r == run)
            })
            .and_then(|j| j.job_id())
            .map(str::to_string))
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

/// What a submission made, from the jobs AWS Batch has of its run (`found`: the top-level
/// jobs tagged with it): for a record written before SubmitJob whose client stopped before it
/// could write what came back. `planned` is every row's job id, in order; arrays are matched
/// by their `array-K` name to the K-th chunk of rows, plain jobs by their job id's name.
pub fn adopt(batch: &str, planned: &[String], per_row: bool, found: &[TopJob]) -> Submitted {
    let mut out = Submitted {
        batch: batch.to_string(),
        ..Submitted::default()
    };
    let named = |name: &str| found.iter().find(|j| j.name == name);
    match (per_row, submit_plan(planned.len())) {
        (false, SubmitPlan::Array { chunks }) => {
            for (k, chunk) in chunks.iter().enumerate() {
                let Some(parent) = named(&job_name(batch, &format!("array-{k}"))) else {
                    continue;
                };
                for (i, job_id) in planned[chunk.clone()].iter().enumerate() {
                    out.jobs.push(SubmittedJob {
                        job_id: job_id.clone(),
                        batch_job_id: format!("{}:{i}", parent.id),
                        array_job_id: Some(parent.id.clone()),
                    });
                }
                out.arrays.push((parent.id.clone(), chunk.len()));
            }
        }
        _ => {
            for job_id in planned {
                if let Some(j) = named(&job_name(batch, job_id)) {
                    out.jobs.push(SubmittedJob {
                        job_id: job_id.clone(),
                        batch_job_id: j.id.clone(),
                        array_job_id: None,
                    });
                }
            }
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::aws_batch::JobState;

    fn top(id: &str, name: &str) -> TopJob {
        TopJob {
            id: id.into(),
            name: name.into(),
            state: JobState::Running,
            tags: Default::default(),
            children: None,
        }
    }

    #[test]
    fn a_submission_is_read_back_from_the_jobs_of_its_run() {
        let planned: Vec<String> = (1..=3).map(|n| format!("b-{n}")).collect();
        let arrays = adopt(
            "b",
            &planned,
            false,
            &[top("p0", &job_name("b", "array-0"))],
        );
        let ids: Vec<(&str, &str)> = arrays
            .jobs
            .iter()
            .map(|j| (j.job_id.as_str(), j.batch_job_id.as_str()))
            .collect();
        assert_eq!(ids, [("b-1", "p0:0"), ("b-2", "p0:1"), ("b-3", "p0:2")]);
        assert_eq!(arrays.arrays, [("p0".to_string(), 3)]);
        // One job per row: only those that were submitted.
        let found = [
            top("j1", &job_name("b", "b-1")),
            top("j3", &job_name("b", "b-3")),
        ];
        let rows = adopt("b", &planned, true, &found);
        let ids: Vec<(&str, &str)> = rows
            .jobs
            .iter()
            .map(|j| (j.job_id.as_str(), j.batch_job_id.as_str()))
            .collect();
        assert_eq!(ids, [("b-1", "j1"), ("b-3", "j3")]);
        assert!(adopt("b", &planned, false, &[]).jobs.is_empty());
    }
}
