//! The runner's S3 copy engine: what `aws s3 cp SRC DEST $FLAGS` did in the bash entrypoint,
//! for the two copies a job makes (inputs down, outputs up), many objects at once.
//!
//! - Flags: [`CopyOptions::parse`] accepts `--recursive`, `--include`/`--exclude` (aws-cli's
//!   rules) and the quiet flags; anything else is refused by name.
//! - Downloads list the prefix once (sizes and ETags come from the listing: no HEAD per object),
//!   refuse keys that would land outside the destination before writing anything, fetch small
//!   objects with one GET and large ones with ranged GETs in parallel, and verify every file's
//!   size and its MD5 where the ETag is one, or S3's own checksum where the object is encrypted
//!   with SSE-KMS or SSE-C (see `verify`). Files appear under their name only once complete and
//!   verified. A download is all or nothing: a job must not run on partial input.
//! - Uploads walk the folder, `PutObject` small files and multipart-upload large ones (aborted on
//!   failure); S3 verifies each body against the CRC32 sent with it. An upload copies everything
//!   it can: a file that cannot be read or put is listed in [`Uploaded::skipped`] with the reason,
//!   and the rest still goes up.
//! - Both retry what failed transiently, in rounds, beyond the SDK's own retries.

mod download;
mod error;
mod files;
mod options;
mod plan;
mod sink;
mod upload;
mod verify;

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rtb_model::{S3Url, Skipped, Transfer};
use tokio::sync::{Semaphore, SemaphorePermit};

pub use download::{Fetched, Wanted};
pub use error::{S3Cause, TransferError};
pub use files::{list_files, LocalFile, SentFile};
pub use options::{CopyOptions, Filter, FlagsError, Pattern};
pub use upload::{listing, survey, Listed, Stamp};

use error::Failure;

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

/// Pauses before the second and third round over the files that failed transiently. The SDK
/// already retried each request (3 attempts within a second or two), so these are for what
/// outlasts that: a throttling burst on a busy prefix, a short outage, an exhausted retry quota.
const ROUND_PAUSES: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(5)];

/// When a long upload says how far it got and how long the rest should take, and how often
/// after that: someone watching a stopped job's log knows it is working.
const PROGRESS_FIRST: Duration = Duration::from_secs(3);
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

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

/// What an upload did: what went up, and what could not, with why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uploaded {
    pub copied: Transfer,
    pub skipped: Vec<Skipped>,
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
    /// All or nothing: any object that cannot be fetched and verified fails the copy.
    pub async fn download(
        &self,
        src: &S3Url,
        dest: &Path,
        opts: &CopyOptions,
        log: Log<'_>,
    ) -> Result<Transfer, TransferError> {
        let copy = Session::new(self, opts, log, "download");
        let t = download::run(&copy, src, dest).await;
        if let Some(line) = copy.verified.line("download") {
            copy.warn(line);
        }
        let t = t?;
        copy.summary(t);
        Ok(t)
    }

    /// A local folder (with `--recursive`) or one file (without) to an S3 prefix. Everything
    /// that can be uploaded is; the rest is in [`Uploaded::skipped`]. `Err` only when nothing
    /// could be (the source is unreadable, the bucket does not exist).
    pub async fn upload(
        &self,
        src: &Path,
        dest: &S3Url,
        opts: &CopyOptions,
        log: Log<'_>,
    ) -> Result<Uploaded, TransferError> {
        let copy = Session::new(self, opts, log, "upload");
        let up = upload::run(&copy, src, dest).await?;
        copy.summary(up.copied);
        Ok(up)
    }
}

impl Transfers {
    /// Each listed file to its URL (no line per file), starting no further file once `cancel`
    /// is set. Returns the files sent, with the version of each that went up (unchanged during
    /// its upload) and its ETag, and those that could not be, with why. `Err` only when none
    /// can be (the bucket is gone).
    pub async fn upload_files(
        &self,
        files: Vec<(LocalFile, S3Url)>,
        log: Log<'_>,
        cancel: &AtomicBool,
    ) -> Result<(Vec<SentFile>, Vec<Skipped>), TransferError> {
        let opts = CopyOptions {
            quiet: true,
            ..CopyOptions::default()
        };
        let mut copy = Session::new(self, &opts, log, "upload");
        copy.cancel = Some(cancel);
        files::put_each(&copy, files).await
    }

    /// Each wanted object, in exactly the version its ETag names, to its path; a file appears
    /// only once complete and verified. What can be fetched is, whatever happens to the rest.
    pub async fn download_exact(
        &self,
        wanted: Vec<Wanted>,
        log: Log<'_>,
    ) -> Result<Fetched, TransferError> {
        let opts = CopyOptions {
            quiet: true,
            ..CopyOptions::default()
        };
        let copy = Session::new(self, &opts, log, "download");
        download::fetch_each(&copy, wanted).await
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
/// parts, where its lines go, and what it has counted so far.
pub(crate) struct Session<'a> {
    client: &'a aws_sdk_s3::Client,
    limits: Limits,
    opts: &'a CopyOptions,
    permits: Semaphore,
    log: Log<'a>,
    verb: &'static str,
    started: Instant,
    /// How the encrypted objects of a download were checked.
    verified: verify::Tally,
    /// Bytes of finished files and parts, for the progress line.
    done_bytes: AtomicU64,
    /// Set by the caller to start no further file (those running finish).
    cancel: Option<&'a AtomicBool>,
}

/// What a run over many items left: what was copied (and what each item's work returned),
/// what could not be, and the failure that stopped it early, if one did.
pub(crate) struct Rounds<T, O> {
    pub copied: Transfer,
    /// Items done, with what their work returned, in no particular order.
    pub done: Vec<(T, O)>,
    /// Items that could not be copied, in their original order, with the last error.
    pub failed: Vec<(T, TransferError)>,
    /// What ended the copy early; items still waiting for a round then are in neither list.
    pub fatal: Option<TransferError>,
}

/// What one item's work moved, for the byte count.
pub(crate) trait Moved {
    fn bytes(&self) -> u64;
}

impl Moved for u64 {
    fn bytes(&self) -> u64 {
        *self
    }
}

impl<'a> Session<'a> {
    fn new(t: &'a Transfers, opts: &'a CopyOptions, log: Log<'a>, verb: &'static str) -> Self {
        Session {
            client: &t.client,
            limits: t.limits,
            opts,
            permits: Semaphore::new(t.limits.requests_in_flight),
            log,
            verb,
            started: Instant::now(),
            verified: verify::Tally::default(),
            done_bytes: AtomicU64::new(0),
            cancel: None,
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.is_some_and(|c| c.load(Ordering::Relaxed))
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

    fn moved(&self, bytes: u64) {
        self.done_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn summary(&self, t: Transfer) {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = t.bytes as f64 / (1 << 20) as f64 / secs.max(1e-6);
        (self.log)(format!(
            "{}: {} file{}, {} in {secs:.2} s ({rate:.1} MiB/s)",
            self.verb,
            t.files,
            if t.files == 1 { "" } else { "s" },
            plan::human_bytes(t.bytes),
        ));
    }

    /// Lines saying how far a long copy of `total` bytes got; never returns (run it beside the
    /// copy and drop it when the copy ends).
    async fn report_progress(&self, total: u64) {
        tokio::time::sleep(PROGRESS_FIRST).await;
        loop {
            let done = self.done_bytes.load(Ordering::Relaxed).min(total);
            let secs = self.started.elapsed().as_secs_f64();
            let rate = done as f64 / secs.max(1e-6);
            let rest = if done == 0 {
                "no file finished yet".to_string()
            } else {
                format!(
                    "{:.1} MiB/s, about {} to go",
                    rate / (1 << 20) as f64,
                    human_secs((total - done) as f64 / rate.max(1.0))
                )
            };
            (self.log)(format!(
                "{}: {} of {} in {secs:.0} s ({rest})",
                self.verb,
                plan::human_bytes(done),
                plan::human_bytes(total)
            ));
            tokio::time::sleep(PROGRESS_EVERY).await;
        }
    }

    /// Run `work` on every item, at most `limit` at once, adding up the bytes each moved. An
    /// item that failed transiently goes again in a later round, after a pause
    /// ([`ROUND_PAUSES`]); one that failed for good is reported in `failed`. A fatal failure
    /// stops new items from starting, but those running finish (so a multipart upload aborts
    /// itself rather than being dropped half-way).
    async fn rounds<T, O, F, Fut>(&self, items: Vec<T>, limit: usize, work: F) -> Rounds<T, O>
    where
        T: Clone,
        O: Moved,
        F: Fn(T) -> Fut,
        Fut: Future<Output = Result<O, TransferError>>,
    {
        let stop = AtomicBool::new(false);
        let mut copied = Transfer::default();
        let mut done = Vec::new();
        let mut failed: Vec<(usize, TransferError)> = Vec::new();
        let mut fatal = None;
        let mut pending: Vec<usize> = (0..items.len()).collect();
        for round in 0..=ROUND_PAUSES.len() {
            if pending.is_empty() || fatal.is_some() {
                break;
            }
            if round > 0 {
                let pause = ROUND_PAUSES[round - 1];
                (self.log)(format!(
                    "{}: {} file{} failed transiently; trying again in {} (round {} of {})",
                    self.verb,
                    pending.len(),
                    if pending.len() == 1 { "" } else { "s" },
                    human_secs(pause.as_secs_f64()),
                    round + 1,
                    ROUND_PAUSES.len() + 1
                ));
                tokio::time::sleep(pause).await;
            }
            let last_round = round == ROUND_PAUSES.len();
            let results: Vec<(usize, Option<Result<O, TransferError>>)> =
                futures::stream::iter(std::mem::take(&mut pending))
                    .map(|i| {
                        let stop = &stop;
                        let item = items[i].clone();
                        let work = &work;
                        async move {
                            if stop.load(Ordering::Relaxed) || self.cancelled() {
                                return (i, None);
                            }
                            let r = work(item).await;
                            if let Err(e) = &r {
                                if e.failure() == Failure::Fatal {
                                    stop.store(true, Ordering::Relaxed);
                                }
                            }
                            (i, Some(r))
                        }
                    })
                    .buffer_unordered(limit.max(1))
                    .collect()
                    .await;
            for (i, r) in results {
                match r {
                    Some(Ok(out)) => {
                        copied.files += 1;
                        copied.bytes += out.bytes();
                        done.push((items[i].clone(), out));
                    }
                    Some(Err(e)) => match e.failure() {
                        Failure::Fatal => {
                            fatal.get_or_insert(e);
                        }
                        Failure::Transient if !last_round => pending.push(i),
                        _ => failed.push((i, e)),
                    },
                    None => {}
                }
            }
            pending.sort_unstable();
        }
        failed.sort_by_key(|(i, _)| *i);
        Rounds {
            copied,
            done,
            failed: failed
                .into_iter()
                .map(|(i, e)| (items[i].clone(), e))
                .collect(),
            fatal,
        }
    }
}

/// `0.4 s`, `12 s`, `3 min 20 s`, `2 h 05 min`: an estimate, not a measurement.
fn human_secs(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        let s = s.round() as u64;
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        let m = (s / 60.0).round() as u64;
        format!("{} h {:02} min", m / 60, m % 60)
    }
}

pub use plan::human_bytes;

/// Where a file's key, relative to a copied prefix, lands below the destination folder: its
/// relative path, None for a folder marker, or why it would leave the folder.
pub fn placement(relative_key: &str) -> Result<Option<std::path::PathBuf>, &'static str> {
    match plan::placement(relative_key)? {
        plan::Placement::File(p) => Ok(Some(p)),
        plan::Placement::Root | plan::Placement::Folder(_) => Ok(None),
    }
}

/// An estimate of how long `bytes` take at `bytes_per_s`, for a person.
pub fn estimate(bytes: u64, bytes_per_s: f64) -> String {
    human_secs(bytes as f64 / bytes_per_s.max(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_read_well() {
        assert_eq!(human_secs(0.42), "0.4 s");
        assert_eq!(human_secs(12.4), "12 s");
        assert_eq!(human_secs(200.0), "3 min 20 s");
        assert_eq!(human_secs(7500.0), "2 h 05 min");
        assert_eq!(estimate(100 << 20, (10 << 20) as f64), "10 s");
    }
}
