//! Local folder -> S3. Walk the folder, then put files concurrently; large files as multipart
//! uploads whose parts go in parallel, aborted if any part fails for good.
//!
//! Everything that can be uploaded is: a name that is not UTF-8, a folder that cannot be read,
//! a file deleted before its turn, a PUT refused for one key: each is listed (with why) and
//! the rest still goes up. A file that changes while it is uploaded (the body is read at the
//! size seen before) is uploaded again, and listed when it keeps changing.
//!
//! Integrity: every PutObject and UploadPart carries a CRC32 of its body, computed by the SDK
//! from the bytes as they are sent (a header for in-memory bodies, an aws-chunked trailer for
//! bodies streamed from the file); S3 recomputes it and refuses a mismatch with `BadDigest`.

use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use futures::{StreamExt, TryStreamExt};
use rtb_model::errors::chain;
use rtb_model::{S3Url, Skipped};

use super::error::{Failure, S3Cause, TransferError};
use super::{plan, CopyOptions, Session, Uploaded};

/// Files up to this size are read into memory and sent in one piece; larger ones stream from
/// disk, so a hundred concurrent uploads never hold more than a few hundred MiB.
const IN_MEMORY_MAX: u64 = 1 << 20;

/// How many times a file that changed while it was uploaded is uploaded again.
const CHANGE_ATTEMPTS: u32 = 3;

/// Pauses before a part that failed transiently is sent again, inside its multipart upload
/// (cheaper than starting the whole file over in the next round).
const PART_PAUSES: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(2)];

/// At most this many skipped files are named in the log; result.json lists them all.
const SKIPPED_IN_LOG: usize = 50;

/// What a file looked like: a change in either means it was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub modified: Option<SystemTime>,
}

impl Stamp {
    pub fn of(meta: &Metadata) -> Self {
        Stamp {
            size: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Put {
    pub(super) path: PathBuf,
    /// Its key below the uploaded folder (the name alone for one file).
    pub(super) rel: String,
    pub(super) url: S3Url,
    pub(super) stamp: Stamp,
}

/// One file uploaded: the stamp it had before and after (so the bytes in S3 are that
/// version's), and the object's ETag as S3 answered.
#[derive(Debug, Clone)]
pub(super) struct PutDone {
    pub(super) stamp: Stamp,
    pub(super) etag: Option<String>,
}

impl super::Moved for PutDone {
    fn bytes(&self) -> u64 {
        self.stamp.size
    }
}

pub(super) async fn run(
    copy: &Session<'_>,
    src: &Path,
    dest: &S3Url,
) -> Result<Uploaded, TransferError> {
    let meta = tokio::fs::metadata(src)
        .await
        .map_err(TransferError::local("read", src))?;
    let (puts, mut skipped) = match (meta.is_dir(), copy.opts.recursive) {
        (true, true) => walk_all(copy, src, dest).await?,
        (true, false) => return Err(TransferError::NeedsRecursive { path: src.into() }),
        (false, true) => {
            return Err(TransferError::Local {
                action: "upload the folder",
                path: src.into(),
                source: std::io::Error::other(
                    "it is a file: remove --recursive to upload one file",
                ),
            })
        }
        (false, false) => (one_file(copy, src, dest, Stamp::of(&meta))?, Vec::new()),
    };
    let total = puts.iter().map(|p| p.stamp.size).sum();
    let limit = copy.limits.requests_in_flight;
    let done = {
        let work = std::pin::pin!(copy.rounds(puts, limit, |p| put(copy, p)));
        let progress = std::pin::pin!(copy.report_progress(total));
        match futures::future::select(work, progress).await {
            futures::future::Either::Left((done, _)) => done,
            futures::future::Either::Right(((), work)) => work.await,
        }
    };
    if let Some(e) = done.fatal {
        return Err(e);
    }
    skipped.extend(done.failed.into_iter().map(|(p, e)| Skipped {
        path: p.path.display().to_string(),
        reason: e.skip_reason(),
    }));
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    if !skipped.is_empty() {
        copy.warn(format!(
            "upload: {} file{} NOT uploaded (all else was):",
            skipped.len(),
            if skipped.len() == 1 { "" } else { "s" }
        ));
        for s in skipped.iter().take(SKIPPED_IN_LOG) {
            copy.warn(format!("upload: skipped {}: {}", s.path, s.reason));
        }
        if skipped.len() > SKIPPED_IN_LOG {
            copy.warn(format!(
                "upload: ... and {} more (result.json lists them all)",
                skipped.len() - SKIPPED_IN_LOG
            ));
        }
    }
    Ok(Uploaded {
        copied: done.copied,
        skipped,
    })
}

/// Without `--recursive`: the file goes to the URL's key, or below it when that ends in `/`.
fn one_file(
    copy: &Session<'_>,
    src: &Path,
    dest: &S3Url,
    stamp: Stamp,
) -> Result<Vec<Put>, TransferError> {
    let name = src
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| TransferError::BadName { path: src.into() })?;
    if !copy.opts.includes(name) {
        return Ok(Vec::new());
    }
    let url = if dest.key().is_empty() || dest.key().ends_with('/') {
        dest.join(name)
    } else {
        dest.clone()
    };
    Ok(vec![Put {
        path: src.into(),
        rel: name.to_string(),
        url,
        stamp,
    }])
}

async fn walk_all(
    copy: &Session<'_>,
    src: &Path,
    dest: &S3Url,
) -> Result<(Vec<Put>, Vec<Skipped>), TransferError> {
    let root = src.to_path_buf();
    let walked = tokio::task::spawn_blocking(move || walk(&root))
        .await
        .map_err(|e| TransferError::local("walk", src)(std::io::Error::other(e)))??;
    for note in walked.notes {
        copy.warn(note);
    }
    let puts = walked
        .found
        .into_iter()
        .filter(|f| copy.opts.includes(&f.rel))
        .map(|f| Put {
            url: dest.join(&f.rel),
            path: f.path,
            rel: f.rel,
            stamp: f.stamp,
        })
        .collect();
    Ok((puts, walked.skipped))
}

/// How many files and bytes an upload of `src` with `opts` would copy now (for a person: what
/// a stop will save). Unreadable parts are left out.
pub fn survey(src: &Path, opts: &CopyOptions) -> (u64, u64) {
    listing(src, opts)
        .iter()
        .fold((0, 0), |(n, b), f| (n + 1, b + f.size))
}

/// A file an upload would copy: where it is, its key below the destination, its size and
/// modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub path: PathBuf,
    pub rel: String,
    pub size: u64,
    pub modified: Option<SystemTime>,
}

/// The files an upload of the folder `src` with `opts` would copy now, by key. Unreadable
/// parts are left out.
pub fn listing(src: &Path, opts: &CopyOptions) -> Vec<Listed> {
    match walk(src) {
        Ok(w) => w
            .found
            .into_iter()
            .filter(|f| opts.includes(&f.rel))
            .map(|f| Listed {
                path: f.path,
                rel: f.rel,
                size: f.stamp.size,
                modified: f.stamp.modified,
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

pub(super) struct Found {
    pub(super) path: PathBuf,
    pub(super) rel: String,
    pub(super) stamp: Stamp,
}

pub(super) struct Walked {
    pub(super) found: Vec<Found>,
    /// What should have been uploaded but cannot be.
    pub(super) skipped: Vec<Skipped>,
    /// What is left out on purpose (symlinked folders, sockets), for the log.
    notes: Vec<String>,
}

fn skip(skipped: &mut Vec<Skipped>, path: &Path, reason: impl Into<String>) {
    skipped.push(Skipped {
        path: path.display().to_string(),
        reason: reason.into(),
    });
}

/// Regular files below `root` (and symlinks to regular files), sorted by relative key. Folders
/// reached through symlinks are not entered (no loops, nothing outside the folder); sockets,
/// FIFOs and devices are left out with a note. What cannot be read or named is skipped, with
/// why; only an unreadable `root` is an error.
pub(super) fn walk(root: &Path) -> Result<Walked, TransferError> {
    let mut w = Walked {
        found: Vec::new(),
        skipped: Vec::new(),
        notes: Vec::new(),
    };
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = match std::fs::read_dir(&folder) {
            Ok(e) => e,
            Err(e) if folder == root => return Err(TransferError::local("list", &folder)(e)),
            Err(e) => {
                skip(
                    &mut w.skipped,
                    &folder,
                    format!("cannot read this folder ({e}): nothing below it was uploaded"),
                );
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    skip(
                        &mut w.skipped,
                        &folder,
                        format!(
                            "cannot list all of this folder ({e}): files below it may be missing"
                        ),
                    );
                    break;
                }
            };
            let path = entry.path();
            let Some(rel) = path.strip_prefix(root).ok().and_then(plan::relative_key) else {
                skip(
                    &mut w.skipped,
                    &path,
                    "its name is not valid UTF-8, which an S3 key cannot hold: rename it (a folder: nothing below it was uploaded)",
                );
                continue;
            };
            let kind = match entry.file_type() {
                Ok(k) => k,
                Err(e) => {
                    skip_unreadable(&mut w.skipped, &path, &e);
                    continue;
                }
            };
            let meta = if kind.is_symlink() {
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => m,
                    Ok(m) if m.is_dir() => {
                        w.notes.push(format!(
                            "upload: leaving out {}: a symlink to a folder (not followed)",
                            path.display()
                        ));
                        continue;
                    }
                    Ok(_) | Err(_) => {
                        w.notes.push(format!(
                            "upload: leaving out {}: a symlink to nothing uploadable",
                            path.display()
                        ));
                        continue;
                    }
                }
            } else if kind.is_dir() {
                folders.push(path);
                continue;
            } else if kind.is_file() {
                match entry.metadata() {
                    Ok(m) => m,
                    Err(e) => {
                        skip_unreadable(&mut w.skipped, &path, &e);
                        continue;
                    }
                }
            } else {
                w.notes.push(format!(
                    "upload: leaving out {}: not a regular file (socket, FIFO or device)",
                    path.display()
                ));
                continue;
            };
            w.found.push(Found {
                path,
                rel,
                stamp: Stamp::of(&meta),
            });
        }
    }
    w.found.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(w)
}

fn skip_unreadable(skipped: &mut Vec<Skipped>, path: &Path, e: &std::io::Error) {
    if e.kind() == std::io::ErrorKind::NotFound {
        skip(skipped, path, "it was deleted before it could be uploaded");
    } else {
        skip(skipped, path, format!("cannot inspect it: {e}"));
    }
}

/// Upload one file; again when it changed meanwhile (its size or time differ before and after).
pub(super) async fn put(copy: &Session<'_>, p: Put) -> Result<PutDone, TransferError> {
    let mut stamp = p.stamp;
    for attempt in 1..=CHANGE_ATTEMPTS {
        let sent = if stamp.size > copy.limits.multipart_threshold {
            put_multipart(copy, &p, stamp.size).await
        } else {
            put_whole(copy, &p, stamp.size).await
        };
        let now = match tokio::fs::metadata(&p.path).await {
            Ok(m) => Stamp::of(&m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(TransferError::Vanished { path: p.path });
            }
            Err(e) => {
                return Err(match sent {
                    Err(failed) => failed,
                    Ok(_) => TransferError::local("inspect", &p.path)(e),
                })
            }
        };
        match sent {
            Ok(etag) if now == stamp => {
                if stamp.size <= copy.limits.multipart_threshold {
                    // A multipart upload counted its parts as they went.
                    copy.moved(stamp.size);
                }
                copy.file_line(|| {
                    format!(
                        "upload: {} -> {} ({})",
                        p.path.display(),
                        p.url,
                        plan::human_bytes(stamp.size)
                    )
                });
                return Ok(PutDone { stamp, etag });
            }
            // A failure of a file that did not change is the failure's own story.
            Err(e) if now == stamp => return Err(e),
            // Changed under us (grown, shrunk, rewritten): what went up may be wrong.
            Ok(_) | Err(_) => {}
        }
        if attempt < CHANGE_ATTEMPTS {
            copy.warn(format!(
                "upload: {} changed while it was uploaded ({} -> {}); uploading it again",
                p.path.display(),
                plan::human_bytes(stamp.size),
                plan::human_bytes(now.size)
            ));
        }
        stamp = now;
    }
    Err(TransferError::KeptChanging {
        path: p.path,
        attempts: CHANGE_ATTEMPTS,
    })
}

/// The object's ETag as S3 answered the PUT.
async fn put_whole(
    copy: &Session<'_>,
    p: &Put,
    size: u64,
) -> Result<Option<String>, TransferError> {
    let _permit = copy.permit().await;
    let (body, len, crc) = body(p, 0, size, true).await?;
    let out = copy
        .client
        .put_object()
        .bucket(p.url.bucket())
        .key(p.url.key())
        .content_length(len as i64)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .set_checksum_crc32(crc)
        .body(body)
        .customize()
        .disable_payload_signing()
        .send()
        .await
        .map_err(|e| put_error(p, "PutObject", S3Cause::from_sdk(&e)))?;
    Ok(out.e_tag().map(str::to_string))
}

async fn put_multipart(
    copy: &Session<'_>,
    p: &Put,
    size: u64,
) -> Result<Option<String>, TransferError> {
    let created = copy
        .client
        .create_multipart_upload()
        .bucket(p.url.bucket())
        .key(p.url.key())
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .send()
        .await
        .map_err(|e| put_error(p, "CreateMultipartUpload", S3Cause::from_sdk(&e)))?;
    let upload_id = created.upload_id().unwrap_or_default().to_string();
    let result = put_parts(copy, p, size, &upload_id).await;
    if result.is_err() {
        let aborted = copy
            .client
            .abort_multipart_upload()
            .bucket(p.url.bucket())
            .key(p.url.key())
            .upload_id(&upload_id)
            .send()
            .await;
        if let Err(e) = aborted {
            copy.warn(format!(
                "upload: could not abort the multipart upload {upload_id} of {} ({}); \
                 its parts are billed until a lifecycle rule or AbortMultipartUpload removes them",
                p.url,
                S3Cause::from_sdk(&e)
            ));
        }
    }
    result
}

async fn put_parts(
    copy: &Session<'_>,
    p: &Put,
    size: u64,
    upload_id: &str,
) -> Result<Option<String>, TransferError> {
    let part_size = plan::part_size(size, copy.limits.part_size);
    let mut parts: Vec<CompletedPart> =
        futures::stream::iter(plan::parts(size, part_size).into_iter().enumerate())
            .map(|(i, range)| put_part(copy, p, upload_id, i as i32 + 1, range))
            .buffer_unordered(copy.limits.requests_in_flight)
            .try_collect()
            .await?;
    parts.sort_by_key(|part| part.part_number());
    let out = copy
        .client
        .complete_multipart_upload()
        .bucket(p.url.bucket())
        .key(p.url.key())
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .map_err(|e| put_error(p, "CompleteMultipartUpload", S3Cause::from_sdk(&e)))?;
    Ok(out.e_tag().map(str::to_string))
}

/// One part, sent again after a pause when it failed transiently.
async fn put_part(
    copy: &Session<'_>,
    p: &Put,
    upload_id: &str,
    number: i32,
    range: std::ops::Range<u64>,
) -> Result<CompletedPart, TransferError> {
    let mut pauses = PART_PAUSES.iter();
    loop {
        let sent = put_part_once(copy, p, upload_id, number, range.clone()).await;
        match (sent, pauses.next()) {
            (Err(e), Some(pause)) if e.failure() == Failure::Transient => {
                tokio::time::sleep(*pause).await;
            }
            (sent, _) => return sent,
        }
    }
}

async fn put_part_once(
    copy: &Session<'_>,
    p: &Put,
    upload_id: &str,
    number: i32,
    range: std::ops::Range<u64>,
) -> Result<CompletedPart, TransferError> {
    let _permit = copy.permit().await;
    let len = range.end - range.start;
    let (body, _, crc) = body(p, range.start, len, false).await?;
    let out = copy
        .client
        .upload_part()
        .bucket(p.url.bucket())
        .key(p.url.key())
        .upload_id(upload_id)
        .part_number(number)
        .content_length(len as i64)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .set_checksum_crc32(crc)
        .body(body)
        .customize()
        .disable_payload_signing()
        .send()
        .await
        .map_err(|e| put_error(p, "UploadPart", S3Cause::from_sdk(&e)))?;
    copy.moved(len);
    Ok(CompletedPart::builder()
        .part_number(number)
        .set_e_tag(out.e_tag().map(str::to_string))
        .set_checksum_crc32(out.checksum_crc32().map(str::to_string))
        .build())
}

/// Bytes read per step when hashing a part, and per step of a streamed body.
const READ_STEP: usize = 1 << 20;

/// `len` bytes of the file from `offset`, how many that is, and, for a streamed body, its
/// CRC32 (base64, as S3's `x-amz-checksum-crc32` wants it). A whole small file is read into
/// memory (as it is now: a change shows in the stamp afterwards); the rest is streamed at
/// exactly `len` bytes (the SDK reopens the file if it retries).
///
/// Why the checksum is computed here for streamed bodies: left to the SDK, a streamed body
/// with a checksum is sent aws-chunked, and over a plain-http endpoint every chunk is then
/// signed, which hashes the whole body with SHA-256 (most of an upload's CPU). Given the
/// checksum up front, the body goes as one piece with an unsigned payload, and S3 still
/// checks every byte against the CRC32. The file is read twice, the second time from the
/// page cache; a change in between fails the checksum and the part is sent again.
async fn body(
    p: &Put,
    offset: u64,
    len: u64,
    whole: bool,
) -> Result<(ByteStream, u64, Option<String>), TransferError> {
    if whole && len <= IN_MEMORY_MAX {
        let bytes = tokio::fs::read(&p.path)
            .await
            .map_err(|e| read_error(p, e))?;
        let n = bytes.len() as u64;
        return Ok((ByteStream::from(bytes), n, None));
    }
    let path = p.path.clone();
    let crc = tokio::task::spawn_blocking(move || crc32_of(&path, offset, len))
        .await
        .unwrap_or_else(|join| Err(std::io::Error::other(join)))
        .map_err(|e| read_error(p, e))?;
    let stream = ByteStream::read_from()
        .path(&p.path)
        .offset(offset)
        .length(Length::Exact(len))
        .buffer_size(READ_STEP)
        .build()
        .await
        .map_err(|e| TransferError::local("read", &p.path)(std::io::Error::other(chain(&e))))?;
    Ok((stream, len, Some(crc)))
}

/// The CRC32 of `len` bytes of `path` from `offset`, base64 of its big-endian bytes. A file
/// that is shorter than that now has changed: an error, and the part is not sent.
fn crc32_of(path: &std::path::Path, offset: u64, len: u64) -> std::io::Result<String> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path)?;
    let mut hasher = aws_smithy_checksums::ChecksumAlgorithm::Crc32.into_impl();
    let mut buf = vec![0u8; READ_STEP.min(len as usize).max(1)];
    let mut done = 0u64;
    while done < len {
        let want = ((len - done) as usize).min(buf.len());
        let n = file.read_at(&mut buf[..want], offset + done)?;
        if n == 0 {
            return Err(std::io::Error::other(
                "it became shorter while it was being uploaded",
            ));
        }
        hasher.update(&buf[..n]);
        done += n as u64;
    }
    Ok(aws_smithy_types::base64::encode(&hasher.finalize()[..]))
}

fn read_error(p: &Put, e: std::io::Error) -> TransferError {
    if e.kind() == std::io::ErrorKind::NotFound {
        TransferError::Vanished {
            path: p.path.clone(),
        }
    } else {
        TransferError::local("read", &p.path)(e)
    }
}

fn put_error(p: &Put, step: &'static str, cause: Box<S3Cause>) -> TransferError {
    if cause.is("NoSuchBucket") {
        TransferError::NoSuchBucket {
            bucket: p.url.bucket().to_string(),
        }
    } else {
        TransferError::Put {
            path: p.path.clone(),
            url: p.url.clone(),
            step,
            cause,
        }
    }
}
