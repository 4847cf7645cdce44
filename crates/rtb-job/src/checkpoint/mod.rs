//! Checkpoints: while the command runs, what OUTPUT_SCRATCH holds is saved to the attempt's
//! records (`<records>/checkpoint/`, see `rtb_model::layout`) every RTB_CHECKPOINT_EVERY, and
//! at once on a spot notice, so that a later attempt on a fresh instance can restore it
//! ([`restore`]) instead of starting again from nothing.
//!
//! - Only what changed since the last checkpoint (size or modification time) is sent, through
//!   the runner's own transfer engine, with few requests at once ([`REQUESTS`]); the folder is
//!   walked off the async threads. The interpreter is a process of its own: nothing here
//!   waits on it or holds it up.
//! - A file still being written is not recorded as complete: it is left out until it has been
//!   still for [`SETTLE`], and the upload refuses one that changes while it is sent.
//! - The manifest (written after the files, replacing the last one) lists every complete file
//!   with the ETag of its saved version, so a restore takes exactly that version or nothing.

mod plan;
mod restore;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use rtb_model::checkpoint::{Entry, Interrupted, Manifest, CHECKPOINT_SCHEMA};
use rtb_model::{Checkpoints, JobRecords};
use tokio::sync::watch;

use crate::logsink::{Log, INTERPRETER_LOG};
use crate::transfer::{self, CopyOptions, Limits, Transfers};

pub use plan::{decide, Decision, Saved};
pub use restore::{restore, Restored};

/// Requests in flight at once in a checkpoint: an eighth of the output copy's, so that the sync
/// takes little of the network and CPU the job runs on (bench/checkpoint.sh measures the cost).
pub const REQUESTS: usize = 8;
/// A file that changed more recently than this is left for a later checkpoint: a writer may
/// pause between writes, and a half-written file must not be recorded as complete.
pub const SETTLE: Duration = Duration::from_secs(2);
/// After a spot notice, how often further checkpoints follow the first: the command runs on
/// for up to two minutes, and what it finishes then is worth saving too.
pub const AFTER_NOTICE: Duration = Duration::from_secs(5);
/// At most this many files that could not be saved are named in the log per checkpoint.
const NAMED_IN_LOG: usize = 5;

/// The checkpoints of one attempt: what the newest holds, and how to make the next.
pub struct Checkpointer {
    s3: aws_sdk_s3::Client,
    transfers: Transfers,
    records: JobRecords,
    scratch: PathBuf,
    /// The output copy's filters: what the job would not upload is not checkpointed either.
    opts: CopyOptions,
    job_id: String,
    attempt: u32,
    saved: BTreeMap<String, Saved>,
    stats: Checkpoints,
}

impl Checkpointer {
    pub fn new(
        s3: aws_sdk_s3::Client,
        records: JobRecords,
        scratch: PathBuf,
        opts: CopyOptions,
        job_id: String,
        attempt: u32,
    ) -> Self {
        let transfers = Transfers::new(s3.clone()).with_limits(Limits {
            requests_in_flight: REQUESTS,
            ..Limits::default()
        });
        Checkpointer {
            s3,
            transfers,
            records,
            scratch,
            opts,
            job_id,
            attempt,
            saved: BTreeMap::new(),
            stats: Checkpoints::default(),
        }
    }

    /// Start from what a restore put in the folder: those files are saved already (in the
    /// earlier attempt's checkpoint), and stay so while they do not change.
    pub fn seed(&mut self, saved: BTreeMap<String, Saved>) {
        self.saved = saved;
    }

    pub fn stats(&self) -> Checkpoints {
        self.stats.clone()
    }

    /// One checkpoint: send what changed, then write the manifest (also when nothing changed
    /// if `always`, e.g. right after a restore, so that a later attempt finds the restored
    /// files through this attempt's records). Starts no further file once `cancel` is set.
    /// Failures are logged: a checkpoint is an extra, never a reason to fail the job.
    pub async fn checkpoint(&mut self, log: &Log, cancel: &AtomicBool, always: bool) {
        let t = Instant::now();
        let (root, opts) = (self.scratch.clone(), self.opts.clone());
        let walked = tokio::task::spawn_blocking(move || transfer::list_files(&root, &opts))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        let files = match walked {
            Ok((files, _)) => files
                .into_iter()
                .filter(|f| f.rel != INTERPRETER_LOG)
                .collect(),
            Err(e) => {
                log.info(format!(
                    "checkpoint: cannot list {}: {e}",
                    self.scratch.display()
                ));
                return;
            }
        };
        let d = plan::decide(&self.saved, files, SystemTime::now(), SETTLE);
        if d.send.is_empty() && d.gone.is_empty() && !always {
            return;
        }
        for rel in &d.gone {
            self.saved.remove(rel);
        }
        let base = self.records.checkpoint_files();
        let want: Vec<_> = d
            .send
            .into_iter()
            .map(|f| {
                let url = base.join(&f.rel);
                (f, url)
            })
            .collect();
        let say = |line: String| log.info(format!("checkpoint: {line}"));
        let (sent, skipped) = match self.transfers.upload_files(want, &say, cancel).await {
            Ok(r) => r,
            Err(e) => {
                log.info(format!("checkpoint: nothing saved this time: {e}"));
                return;
            }
        };
        let (mut files, mut bytes) = (0u64, 0u64);
        for s in sent {
            let Some(etag) = s.etag else {
                log.info(format!(
                    "checkpoint: S3 gave no ETag for {}; it is left out of the checkpoint",
                    s.url
                ));
                continue;
            };
            files += 1;
            bytes += s.file.stamp.size;
            self.saved.insert(
                s.file.rel,
                Saved {
                    stamp: s.file.stamp,
                    url: s.url,
                    etag,
                },
            );
        }
        for s in skipped.iter().take(NAMED_IN_LOG) {
            log.info(format!(
                "checkpoint: {} not saved this time ({}); a later checkpoint tries again",
                s.path, s.reason
            ));
        }
        if skipped.len() > NAMED_IN_LOG {
            log.info(format!(
                "checkpoint: ... and {} more not saved this time",
                skipped.len() - NAMED_IN_LOG
            ));
        }
        let seq = self.stats.count + 1;
        let manifest = self.manifest(seq);
        let key = self.records.checkpoint_manifest_key();
        let body = manifest.to_json().into_bytes();
        if let Err(e) = crate::record::put_json(&self.s3, self.records.bucket(), &key, body).await {
            log.info(format!(
                "checkpoint: cannot write its manifest s3://{}/{key} ({e}); the previous checkpoint stands",
                self.records.bucket()
            ));
            return;
        }
        let secs = t.elapsed().as_secs_f64();
        self.stats.count += 1;
        self.stats.files += files;
        self.stats.bytes += bytes;
        self.stats.seconds += secs;
        self.stats.saved = self.saved.len() as u64;
        self.stats.last_at = Some(manifest.written_at.clone());
        let waiting = if d.unsettled > 0 {
            format!(", {} still being written", d.unsettled)
        } else {
            String::new()
        };
        log.info(format!(
            "checkpoint {seq}: {files} file{} sent ({}) in {secs:.1}s; {} saved in all{waiting}",
            if files == 1 { "" } else { "s" },
            transfer::human_bytes(bytes),
            self.saved.len(),
        ));
    }

    fn manifest(&self, seq: u64) -> Manifest {
        Manifest {
            schema: CHECKPOINT_SCHEMA,
            job_id: self.job_id.clone(),
            attempt: self.attempt,
            seq,
            written_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            files: self
                .saved
                .iter()
                .map(|(rel, s)| Entry {
                    path: rel.clone(),
                    size: s.stamp.size,
                    modified: s
                        .stamp
                        .modified
                        .map(|m| humantime::format_rfc3339_nanos(m).to_string()),
                    url: s.url.to_string(),
                    etag: s.etag.clone(),
                })
                .collect(),
        }
    }
}

/// Checkpoint every `every` (if set) and at once when a notice comes (then every
/// [`AFTER_NOTICE`]), until `done` turns true. A checkpoint under way when it does starts no
/// further file (`cancel`, set by the caller with `done`), and finishes with its manifest.
pub async fn run_beside(
    cp: &mut Checkpointer,
    every: Option<Duration>,
    mut notices: Option<watch::Receiver<Option<Interrupted>>>,
    mut done: watch::Receiver<bool>,
    cancel: &AtomicBool,
    log: &Log,
) {
    // A notice that came before the command started (during the input copy) counts now.
    let mut now = notices
        .as_mut()
        .is_some_and(|n| n.borrow_and_update().is_some());
    let mut after_notice = now;
    loop {
        if !now {
            let wait = if after_notice {
                Some(AFTER_NOTICE)
            } else {
                every
            };
            tokio::select! {
                _ = sleep_for(wait) => {}
                noticed = changed(&mut notices) => after_notice |= noticed,
                _ = done.wait_for(|d| *d) => return,
            }
        }
        now = false;
        if *done.borrow() {
            return;
        }
        cp.checkpoint(log, cancel, false).await;
    }
}

async fn sleep_for(wait: Option<Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Resolves when a new notice arrives (true); a watcher that ended without one never resolves.
async fn changed(notices: &mut Option<watch::Receiver<Option<Interrupted>>>) -> bool {
    if let Some(rx) = notices {
        if rx.changed().await.is_ok() {
            return rx.borrow_and_update().is_some();
        }
    }
    *notices = None;
    std::future::pending().await
}
