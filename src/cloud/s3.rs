//! S3: bucket checks for preflight, reading the runner's log chunks, result record and
//! thumbnail, and writing the batch's own records: who runs where (`rtb_model::records`), a
//! job's cost, the batch's page.

use super::rate::{Family, Need};
use super::{cloud_error, Cloud, CloudError};

impl Cloud {
    /// Ok when the bucket exists and we may use it.
    pub async fn check_bucket(&self, bucket: &str) -> Result<(), CloudError> {
        self.s3
            .head_bucket()
            .bucket(bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let mut e = cloud_error("S3 HeadBucket", e);
                // HeadBucket answers without a body: give the statuses their usual names.
                match e.failure {
                    super::Failure::Refused { status: 404 } => {
                        e.code = Some("NoSuchBucket".into());
                        e.message = format!("bucket '{bucket}' does not exist");
                    }
                    super::Failure::Refused { status: 403 } => {
                        e.code = Some("AccessDenied".into());
                        e.message = format!("no access to bucket '{bucket}'");
                    }
                    _ => {}
                }
                e
            })
    }

    /// Keys under `prefix` that sort after `after`, in order (one page is plenty for a
    /// second's worth of log chunks; the caller asks again).
    pub async fn keys_after(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
    ) -> Result<Vec<String>, CloudError> {
        self.budget.take(Family::S3Read, Need::Poll).await;
        let mut req = self.s3.list_objects_v2().bucket(bucket).prefix(prefix);
        if let Some(a) = after {
            req = req.start_after(a);
        }
        let out = req
            .send()
            .await
            .map_err(|e| cloud_error("S3 ListObjectsV2", e))?;
        Ok(out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect())
    }

    /// The folder names directly under `prefix` (ListObjectsV2 with a `/` delimiter).
    pub async fn subfolders(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, CloudError> {
        let mut out = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .delimiter("/")
            .into_paginator()
            .send();
        while let Some(page) = {
            self.budget.take(Family::S3Read, Need::Must).await;
            pages.next().await
        } {
            let page = page.map_err(|e| cloud_error("S3 ListObjectsV2", e))?;
            out.extend(page.common_prefixes().iter().filter_map(|p| {
                p.prefix()
                    .and_then(|p| p.strip_prefix(prefix))
                    .map(|p| p.trim_end_matches('/').to_string())
            }));
        }
        Ok(out)
    }

    /// A log chunk's bytes, or None when it is not written yet: a poll, which waits when the
    /// client's budget runs low.
    pub async fn log_chunk(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, CloudError> {
        self.budget.take(Family::S3Read, Need::Poll).await;
        self.get_unbudgeted(bucket, key).await
    }

    /// An object's bytes, or None when it does not exist.
    pub async fn get_bytes(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, CloudError> {
        self.budget.take(Family::S3Read, Need::Must).await;
        self.get_unbudgeted(bucket, key).await
    }

    async fn get_unbudgeted(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, CloudError> {
        let out = self.s3.get_object().bucket(bucket).key(key).send().await;
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                let e = cloud_error("S3 GetObject", e);
                if e.is("NoSuchKey") || e.is("NotFound") {
                    return Ok(None);
                }
                return Err(e);
            }
        };
        let bytes = out.body.collect().await.map_err(|e| CloudError {
            failure: super::Failure::NoAnswer,
            ..CloudError::local(
                "S3 GetObject",
                format!(
                    "reading s3://{bucket}/{key}: {}",
                    rtb_model::errors::chain(&e)
                ),
            )
        })?;
        Ok(Some(bytes.into_bytes().to_vec()))
    }

    /// Write an object, replacing it: one of the batch's own records (its page, a job's cost).
    pub async fn put_bytes(
        &self,
        bucket: &str,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<(), CloudError> {
        self.budget.take(Family::S3Write, Need::Must).await;
        self.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(bytes.into())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| cloud_error("S3 PutObject", e))
    }

    /// The runner's result record of a job, once it has written it.
    pub async fn job_result(
        &self,
        records: &rtb_model::JobRecords,
    ) -> Result<Option<rtb_model::JobResult>, CloudError> {
        let bytes = self
            .get_bytes(records.bucket(), &records.result_key())
            .await?;
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Whether the runner has written the job's result record (a HEAD: the watch asks this
    /// of every running job of a batch).
    pub async fn result_written(
        &self,
        records: &rtb_model::JobRecords,
    ) -> Result<bool, CloudError> {
        self.budget.take(Family::S3Read, Need::Poll).await;
        let out = self
            .s3
            .head_object()
            .bucket(records.bucket())
            .key(records.result_key())
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) => {
                let e = cloud_error("S3 HeadObject", e);
                match e.failure {
                    super::Failure::Refused { status: 404 } => Ok(false),
                    _ => Err(e),
                }
            }
        }
    }

    /// A JSON record, or None when it does not exist or is not one of ours.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<T>, CloudError> {
        Ok(self
            .get_bytes(bucket, key)
            .await?
            .and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// A pool instance's record: the jobs handed to it.
    pub async fn instance_record(
        &self,
        run: &rtb_model::RunRecords,
        instance_id: &str,
    ) -> Result<Option<rtb_model::InstanceRecord>, CloudError> {
        self.get_json(run.bucket(), &run.instance_key(instance_id))
            .await
    }

    /// Where a batch attempt ran and what it ran (None for a plain `run`'s records).
    pub async fn attempt_record(
        &self,
        records: &rtb_model::JobRecords,
    ) -> Result<Option<rtb_model::AttemptRecord>, CloudError> {
        self.get_json(records.bucket(), &records.attempt_key())
            .await
    }

    /// A batch job keeps each attempt's records in a folder of its own under the job's
    /// (`<run>-a<attempt>/`): the newest attempt's, when there are any, else the job's folder.
    pub async fn newest_attempt(
        &self,
        base: rtb_model::JobRecords,
    ) -> Result<rtb_model::JobRecords, CloudError> {
        let folders = self
            .subfolders(base.bucket(), &base.root().dir_prefix())
            .await?;
        let newest = folders
            .iter()
            .filter_map(|f| rtb_model::layout::parse_attempt_dir(f))
            .max();
        Ok(match newest {
            Some((run, n)) => base.attempt(run, n),
            None => base,
        })
    }

    /// Whether the runner has written a first log chunk: the job has started.
    pub async fn log_started(&self, records: &rtb_model::JobRecords) -> Result<bool, CloudError> {
        let keys = self
            .keys_after(records.bucket(), &records.log_prefix(), None)
            .await?;
        Ok(keys.iter().any(|k| records.chunk_seq(k).is_some()))
    }
}
