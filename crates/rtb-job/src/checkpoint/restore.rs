//! Restore: before the command of a retried attempt, put back what an earlier attempt's newest
//! checkpoint saved, so that a job that skips finished work (RTB_RESUMED_FROM) starts where
//! that attempt stopped. Each file comes back in exactly the version the manifest names (its
//! ETag, asked with If-Match) or not at all; a file that cannot be restored is one the job
//! makes again. A job whose code ignores all this redoes the work, correctly.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use rtb_model::checkpoint::Manifest;
use rtb_model::{JobRecords, S3Url};

use super::plan::Saved;
use crate::logsink::{Log, INTERPRETER_LOG};
use crate::settings::ResumeFrom;
use crate::transfer::{self, S3Cause, Stamp, Transfers, Wanted};

/// At most this many files that could not be restored are named in the log.
const NAMED_IN_LOG: usize = 10;

/// What a restore put back.
#[derive(Debug)]
pub struct Restored {
    /// The attempt whose checkpoint it was.
    pub from_attempt: u32,
    pub from: JobRecords,
    /// The restored files as they are on disk now, and where their saved bytes are: the
    /// next checkpoint need not send them again.
    pub saved: BTreeMap<String, Saved>,
    pub bytes: u64,
    /// Files the manifest listed that did not come back.
    pub missed: u64,
    pub seconds: f64,
}

/// Find the newest checkpoint `from` names and restore it into `scratch`. None (after saying
/// why in the log) when there is nothing to restore or it cannot be read: the job then starts
/// from nothing, as a first attempt does.
pub async fn restore(
    s3: &aws_sdk_s3::Client,
    from: &ResumeFrom,
    own: Option<&JobRecords>,
    scratch: &Path,
    log: &Log,
) -> Option<Restored> {
    let t = Instant::now();
    let candidates: Vec<JobRecords> = match from {
        ResumeFrom::Records(r) => vec![r.clone()],
        ResumeFrom::Previous => own
            .map(|o| o.earlier_attempts().into_iter().map(|(_, r)| r).collect())
            .unwrap_or_default(),
    };
    if candidates.is_empty() {
        log.info("resume: this is the first attempt; nothing to restore");
        return None;
    }
    let (records, manifest) = find_manifest(s3, &candidates, log).await?;
    log.info(format!(
        "resume: restoring attempt {}'s checkpoint {} ({} file{}, written {}) from {} into {}",
        manifest.attempt,
        manifest.seq,
        manifest.files.len(),
        if manifest.files.len() == 1 { "" } else { "s" },
        manifest.written_at,
        records.root(),
        scratch.display()
    ));
    let (wanted, mut missed) = plan(&records, &manifest, scratch, log);
    let mut modified = BTreeMap::new();
    for e in &manifest.files {
        if let Some(m) = e
            .modified
            .as_deref()
            .and_then(|m| humantime::parse_rfc3339(m).ok())
        {
            modified.insert(e.path.clone(), m);
        }
    }
    let say = |line: String| log.info(format!("resume: {line}"));
    let fetched = match Transfers::new(s3.clone())
        .download_exact(wanted, &say)
        .await
    {
        Ok(f) => f,
        Err(e) => {
            log.info(format!(
                "resume: cannot restore from {}: {e}; the job starts from nothing",
                records.root()
            ));
            return None;
        }
    };
    missed += fetched.failed.len() as u64;
    for (w, e) in fetched.failed.iter().take(NAMED_IN_LOG) {
        log.info(format!("resume: {} not restored: {e}", w.dest.display()));
    }
    if fetched.failed.len() > NAMED_IN_LOG {
        log.info(format!(
            "resume: ... and {} more not restored",
            fetched.failed.len() - NAMED_IN_LOG
        ));
    }
    // Each file gets its saved modification time back, so the next checkpoint sees it
    // unchanged; its stamp is then read from the disk, as a checkpoint's walk will.
    let scratch_root = scratch.to_path_buf();
    let done = fetched.done;
    let saved = tokio::task::spawn_blocking(move || {
        let mut saved = BTreeMap::new();
        for w in done {
            let Some(rel) = w
                .dest
                .strip_prefix(&scratch_root)
                .ok()
                .and_then(transfer_rel)
            else {
                continue;
            };
            if let Some(m) = modified.get(&rel) {
                let _ = std::fs::File::options()
                    .write(true)
                    .open(&w.dest)
                    .and_then(|f| f.set_modified(*m));
            }
            let Ok(meta) = std::fs::metadata(&w.dest) else {
                continue;
            };
            saved.insert(
                rel,
                Saved {
                    stamp: Stamp::of(&meta),
                    url: w.url,
                    etag: w.etag,
                },
            );
        }
        saved
    })
    .await
    .unwrap_or_default();
    let seconds = t.elapsed().as_secs_f64();
    log.info(format!(
        "resume: restored {} file{} ({}) in {seconds:.1}s{}",
        saved.len(),
        if saved.len() == 1 { "" } else { "s" },
        transfer::human_bytes(fetched.copied.bytes),
        if missed > 0 {
            format!("; {missed} could not be and will be made again")
        } else {
            String::new()
        }
    ));
    Some(Restored {
        from_attempt: manifest.attempt,
        from: records,
        saved,
        bytes: fetched.copied.bytes,
        missed,
        seconds,
    })
}

fn transfer_rel(p: &Path) -> Option<String> {
    let parts: Option<Vec<&str>> = p
        .components()
        .map(|c| match c {
            std::path::Component::Normal(n) => n.to_str(),
            _ => None,
        })
        .collect();
    parts.map(|p| p.join("/"))
}

/// The first candidate that has a manifest, with it. A candidate without one is an attempt
/// that saved nothing (it ended before its first checkpoint): the one before it may have.
async fn find_manifest(
    s3: &aws_sdk_s3::Client,
    candidates: &[JobRecords],
    log: &Log,
) -> Option<(JobRecords, Manifest)> {
    for records in candidates {
        let key = records.checkpoint_manifest_key();
        let got = s3
            .get_object()
            .bucket(records.bucket())
            .key(&key)
            .send()
            .await;
        let body = match got {
            Ok(out) => out.body.collect().await.map(|b| b.to_vec()),
            Err(e) => {
                let cause = S3Cause::from_sdk(&e);
                if cause.is("NoSuchKey") {
                    log.info(format!("resume: no checkpoint in {}", records.root()));
                    continue;
                }
                log.info(format!(
                    "resume: cannot read the checkpoint s3://{}/{key} ({cause}); the job starts from nothing",
                    records.bucket()
                ));
                return None;
            }
        };
        let parsed = body
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Manifest>(&b).map_err(|e| e.to_string()));
        match parsed {
            Ok(m) => return Some((records.clone(), m)),
            Err(e) => {
                log.info(format!(
                    "resume: the checkpoint s3://{}/{key} is unreadable ({e}); the job starts from nothing",
                    records.bucket()
                ));
                return None;
            }
        }
    }
    log.info("resume: no earlier attempt saved a checkpoint; the job starts from nothing");
    None
}

/// The objects to fetch, and how many entries are refused: a path that would land outside
/// the folder, the runner's own log, an object outside the job's records.
fn plan(
    records: &JobRecords,
    manifest: &Manifest,
    scratch: &Path,
    log: &Log,
) -> (Vec<Wanted>, u64) {
    // Entries point into this attempt's checkpoint or an earlier attempt's of the same job:
    // both below the folder that holds the attempts' records.
    let base = records.parent().unwrap_or_else(|| records.root().clone());
    let mut wanted = Vec::new();
    let mut refused = 0u64;
    for e in &manifest.files {
        let url: Option<S3Url> = e.url.parse().ok();
        let inside = url.as_ref().is_some_and(|u| {
            u.bucket() == base.bucket() && u.key().starts_with(&base.dir_prefix())
        });
        let place = transfer::placement(&e.path);
        match (url, place) {
            (Some(url), Ok(Some(rel))) if inside && e.path != INTERPRETER_LOG => {
                wanted.push(Wanted {
                    url,
                    dest: scratch.join(rel),
                    size: e.size,
                    etag: e.etag.clone(),
                })
            }
            _ => {
                refused += 1;
                log.info(format!(
                    "resume: leaving out {} (from {}): not a file of this job's checkpoints",
                    e.path, e.url
                ));
            }
        }
    }
    (wanted, refused)
}
