//! The runner's S3 copy engine: what `aws s3 cp SRC DEST $FLAGS` did in the bash entrypoint,
//! for the two copies a job makes (inputs down, outputs up), many objects at once.
//!
//! - Flags: [`CopyOptions::parse`] accepts `--recursive`, `--include`/`--exclude` (aws-cli's
//!   rules) and the quiet flags; anything else is refused by name.
//! - Downloads list the prefix once (sizes and ETags come from the listing: no HEAD per object),
//!   refuse keys that would land outside the destination before writing anything, fetch small
//!   objects with one GET and large ones with ranged GETs in parallel, and verify every file's
//!   size and, where the ETag is an MD5, its MD5. Files appear under their name only once
//!   complete and verified.
//! - Uploads walk the folder, `PutObject` small files and multipart-upload large ones (aborted on
//!   failure); S3 verifies each body against the CRC32 the SDK sends with it.

mod download;
mod error;
mod options;
mod plan;
mod sink;
mod upload;

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::StreamExt;
use rtb_model::{S3Url, Transfer};
use tokio::sync::{Semaphore, SemaphorePermit};

pub use error::{S3Cause, TransferError};
pub use options::{CopyOptions, Filter, FlagsError, Pattern};

/// Requests in flight at once in one copy, over all files and parts. A small-object request is
/// mostly waiting (first-byte latency is 10-50 ms on S3), so throughput on many small files
/// grows with concurrency: 64 requests of ~25 ms is ~2,500 objects/s, about where the runner's
/// own CPU (0.3-0.7 ms per small object, measured; 2 cores on the usual instance) starts to
/// count, and under S3's per-prefix limits (3,500 PUT / 5,500 GET per second). The local
/// emulator is single-threaded and saturates near 8: bench/README.md.
pub const REQUESTS_IN_FLIGHT: usize = 64;

/// Objects larger than this are fetched with ranged GETs and uploaded in parts.
pub const MULTIPART_THRESHOLD: u64 = 16 << 20;

/// Size of one ranged GET or uploaded part (grown for objects that would need >10,000 parts).
/// Large enough that per-request cost is noise, small enough that a 256 MiB file gives 32
/// parts to spread over the connections; 8 MiB was fastest in bench/README.md's sweep (8-64)
/// and is aws-cli's default too.
pub const PART_SIZE: u64 = 8 << 20;

/// How many times a download that broke off mid-body is fetched again. The SDK's retries
/// cover a failed request, not a connection that drops while the body streams.
const BODY_ATTEMPTS: u32 = 3;

/// How hard one copy pushes; the defaults are the constants above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub requests_in_flight: usize,
    pub multipart_threshold: u64,
    pub part_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            requests_in_flight: REQUESTS_IN_FLIGHT,
            multipart_threshold: MULTIPART_THRESHOLD,
            part_size: PART_SIZE,
        }
    }
}

/// Copies between S3 and local folders with one S3 client.
#[derive(Debug, Clone)]
pub struct Transfers {
    client: aws_sdk_s3::Client,
    limits: Limits,
}

/// Where log lines go: one per copied file unless quiet, one summary, and warnings.
pub type Log<'a> = &'a (dyn Fn(String) + Send + Sync);

impl Transfers {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Transfers {
            client,
            limits: Limits::default(),
        }
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        limits_sane(&mut self.limits, limits);
        self
    }

    /// An S3 prefix (with `--recursive`) or one object (without) into the local folder `dest`.
    pub async fn download(
        &self,
        src: &S3Url,
        dest: &Path,
        opts: &CopyOptions,
        log: Log<'_>,
    ) -> Result<Transfer, TransferError> {
        let copy = Session::new(self, opts, log);
        let t = download::run(&copy, src, dest).await?;
        copy.summary("download", t);
        Ok(t)
    }

    /// A local folder (with `--recursive`) or one file (without) to an S3 prefix.
    pub async fn upload(
        &self,
        src: &Path,
        dest: &S3Url,
        opts: &CopyOptions,
        log: Log<'_>,
    ) -> Result<Transfer, TransferError> {
        let copy = Session::new(self, opts, log);
        let t = upload::run(&copy, src, dest).await?;
        copy.summary("upload", t);
        Ok(t)
    }
}

fn limits_sane(into: &mut Limits, asked: Limits) {
    // S3 refuses parts under 5 MiB (but the last); zero concurrency would never finish.
    into.requests_in_flight = asked.requests_in_flight.max(1);
    into.part_size = asked.part_size.max(5 << 20);
    into.multipart_threshold = asked.multipart_threshold.max(into.part_size);
}

/// The S3 client from the default chain: `AWS_ENDPOINT_URL`, `AWS_REGION`, credentials from the
/// environment, a profile or the instance role (IMDS). A custom endpoint (an emulator, a
/// gateway) gets path-style addressing, since it rarely serves `bucket.host` names.
pub async fn s3_client() -> aws_sdk_s3::Client {
    let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let mut config = aws_sdk_s3::config::Builder::from(&shared);
    if shared.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some() {
        config = config.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(config.build())
}

/// One copy in progress: its client, limits, the request permits shared by all its files and
/// parts, and where its lines go.
pub(crate) struct Session<'a> {
    client: &'a aws_sdk_s3::Client,
    limits: Limits,
    opts: &'a CopyOptions,
    permits: Semaphore,
    log: Log<'a>,
    started: Instant,
}

impl<'a> Session<'a> {
    fn new(t: &'a Transfers, opts: &'a CopyOptions, log: Log<'a>) -> Self {
        Session {
            client: &t.client,
            limits: t.limits,
            opts,
            permits: Semaphore::new(t.limits.requests_in_flight),
            log,
            started: Instant::now(),
        }
    }

    async fn permit(&self) -> Option<SemaphorePermit<'_>> {
        // The semaphore is never closed, so this always yields a permit.
        self.permits.acquire().await.ok()
    }

    fn file_line(&self, line: impl FnOnce() -> String) {
        if !self.opts.quiet {
            (self.log)(line());
        }
    }

    fn warn(&self, line: String) {
        (self.log)(line);
    }

    fn summary(&self, verb: &str, t: Transfer) {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = t.bytes as f64 / (1 << 20) as f64 / secs.max(1e-6);
        (self.log)(format!(
            "{verb}: {} file{}, {} in {secs:.2} s ({rate:.1} MiB/s)",
            t.files,
            if t.files == 1 { "" } else { "s" },
            plan::human_bytes(t.bytes),
        ));
    }

    /// Run `work` on every item, at most `limit` at once, adding up the bytes each moved. After
    /// the first failure no new item starts, but those running finish (so a multipart upload
    /// aborts itself rather than being dropped half-way); that first error is returned.
    async fn for_each<T, F, Fut>(
        &self,
        items: Vec<T>,
        limit: usize,
        work: F,
    ) -> Result<Transfer, TransferError>
    where
        F: Fn(T) -> Fut,
        Fut: Future<Output = Result<u64, TransferError>>,
    {
        let failed = AtomicBool::new(false);
        let mut results = futures::stream::iter(items)
            .map(|item| {
                let failed = &failed;
                let work = &work;
                async move {
                    if failed.load(Ordering::Relaxed) {
                        return None;
                    }
                    let r = work(item).await;
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    Some(r)
                }
            })
            .buffer_unordered(limit.max(1));
        let mut total = Transfer::default();
        let mut first_error = None;
        while let Some(r) = results.next().await {
            match r {
                Some(Ok(bytes)) => {
                    total.files += 1;
                    total.bytes += bytes;
                }
                Some(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                None => {}
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }
}
