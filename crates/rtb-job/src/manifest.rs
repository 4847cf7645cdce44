//! `RTB_MANIFEST`: an AWS Batch array child's settings. The client submits a whole batch as one
//! array job and writes every row to one JSON document in S3 (`rtb_model::manifest`); each
//! child reads it first, picks its row by index, and takes the row's settings as its
//! environment, over what the container was started with. Everything after that (settings,
//! bucket checks, the job) is exactly as for a single job.

use rtb_model::contract;
use rtb_model::manifest::{Manifest, RowError, ARRAY_INDEX_VAR, BATCH_JOB_ID_VAR, MANIFEST_VAR};
use rtb_model::S3Url;

use crate::transfer::S3Cause;

/// The largest manifest read: ~1 KiB a row, 64 MiB is far past the 10,000 rows of AWS Batch's
/// largest array job. A bigger object is not one of ours.
const MAX_BYTES: u64 = 64 << 20;

/// Why the manifest gave no settings. Each reads as one line naming the manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{MANIFEST_VAR}: {0}")]
    BadUrl(String),
    #[error("{MANIFEST_VAR}: cannot start the async runtime to read it: {0}")]
    Runtime(String),
    #[error("{MANIFEST_VAR}: cannot read {url}: {cause}; check the key and the job role's s3:GetObject on it")]
    Read { url: S3Url, cause: Box<S3Cause> },
    #[error("{MANIFEST_VAR}: {url} is larger than {MAX_BYTES} bytes: not a batch manifest")]
    TooLarge { url: S3Url },
    #[error("{MANIFEST_VAR}: {url} is not a batch manifest: {problem}")]
    Parse { url: S3Url, problem: String },
    #[error("{MANIFEST_VAR}: {url}: {source}")]
    Row {
        url: S3Url,
        #[source]
        source: RowError,
    },
    #[error("{MANIFEST_VAR}: {url}: row {index} (job '{job_id}'): {problem}")]
    BadRow {
        url: S3Url,
        index: usize,
        job_id: String,
        problem: String,
    },
}

/// The row this process runs: where it came from and the variables it sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picked {
    pub index: usize,
    pub job_id: String,
    /// (name, value), applied in this order; `RTB_JOB_ID` included.
    pub vars: Vec<(String, String)>,
}

/// Read the manifest at `url` and pick the row of the child whose AWS Batch variables are
/// `array_index` / `batch_job_id`.
pub async fn pick(
    s3: &aws_sdk_s3::Client,
    url: &S3Url,
    array_index: Option<&str>,
    batch_job_id: Option<&str>,
) -> Result<Picked, ManifestError> {
    let manifest = fetch(s3, url).await?;
    let (index, row) = manifest
        .row_for(array_index, batch_job_id)
        .map_err(|source| ManifestError::Row {
            url: url.clone(),
            source,
        })?;
    let bad_row = |problem: String| ManifestError::BadRow {
        url: url.clone(),
        index,
        job_id: row.job_id.clone(),
        problem,
    };
    rtb_model::job_id::check(&row.job_id).map_err(|e| bad_row(format!("job_id: {e}")))?;
    let mut vars = Vec::with_capacity(row.settings.len() + 1);
    for (name, value) in &row.settings {
        // A name that is no environment variable would be refused by setenv(3), or worse, half
        // applied; one that is the manifest's own would make the next read another row.
        if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
            return Err(bad_row(format!("'{name}' is not a usable variable")));
        }
        if name == MANIFEST_VAR || name == ARRAY_INDEX_VAR || name == BATCH_JOB_ID_VAR {
            return Err(bad_row(format!("{name} cannot be set by a row")));
        }
        vars.push((name.clone(), value.clone()));
    }
    if !row.settings.contains_key(contract::JOB_ID.name) {
        vars.push((contract::JOB_ID.name.to_string(), row.job_id.clone()));
    }
    Ok(Picked {
        index,
        job_id: row.job_id.clone(),
        vars,
    })
}

async fn fetch(s3: &aws_sdk_s3::Client, url: &S3Url) -> Result<Manifest, ManifestError> {
    let read = |e| ManifestError::Read {
        url: url.clone(),
        cause: e,
    };
    let out = s3
        .get_object()
        .bucket(url.bucket())
        .key(url.key())
        .send()
        .await
        .map_err(|e| read(S3Cause::from_sdk(&e)))?;
    if out.content_length().is_some_and(|n| n as u64 > MAX_BYTES) {
        return Err(ManifestError::TooLarge { url: url.clone() });
    }
    let bytes = out.body.collect().await.map_err(|e| {
        read(Box::new(S3Cause {
            code: None,
            message: format!("the body was cut off: {e}"),
            status: None,
            no_answer: true,
        }))
    })?;
    serde_json::from_slice(&bytes.into_bytes()).map_err(|e| ManifestError::Parse {
        url: url.clone(),
        problem: e.to_string(),
    })
}

/// When `RTB_MANIFEST` is set: read it on a runtime of its own, then set the row's variables in
/// this process's environment. Called first thing in `main`, so the runtime (and every thread
/// it started) is gone before `set_var` runs: no other thread can be reading the environment.
/// Returns the picked row, or `None` when no manifest is named.
pub fn apply_from_env() -> Result<Option<Picked>, ManifestError> {
    let Some(raw) = std::env::var(MANIFEST_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        return Ok(None);
    };
    let url: S3Url = raw
        .trim()
        .parse()
        .map_err(|e: rtb_model::S3UrlError| ManifestError::BadUrl(e.to_string()))?;
    if url.key().is_empty() || url.key().ends_with('/') {
        return Err(ManifestError::BadUrl(format!(
            "'{raw}' names no object: give s3://bucket/key.json"
        )));
    }
    let array_index = std::env::var(ARRAY_INDEX_VAR).ok();
    let batch_job_id = std::env::var(BATCH_JOB_ID_VAR).ok();
    let picked = {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ManifestError::Runtime(e.to_string()))?;
        rt.block_on(async {
            let s3 = crate::transfer::s3_client().await;
            pick(&s3, &url, array_index.as_deref(), batch_job_id.as_deref()).await
        })?
        // The runtime drops here, and with it its blocking-pool threads.
    };
    for (name, value) in &picked.vars {
        std::env::set_var(name, value);
    }
    Ok(Some(picked))
}
