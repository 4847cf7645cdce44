//! S3 -> local folder. List (or HEAD the one object), plan every path, create the folders, then
//! fetch the files concurrently; large objects in ranged parts.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use aws_sdk_s3::types::ChecksumMode;
use futures::{StreamExt, TryStreamExt};
use rtb_model::errors::chain;
use rtb_model::{S3Url, Transfer};

use super::error::{Failure, S3Cause, TransferError};
use super::plan::{self, Placement};
use super::sink::{self, PartialGuard, Sink};
use super::verify::{self, Answered, Check};
use super::{Session, BODY_ATTEMPTS, ROUND_PAUSES};

/// One object to fetch, with what the listing said about it.
#[derive(Debug, Clone)]
struct Fetch {
    url: S3Url,
    dest: PathBuf,
    size: u64,
    etag: Option<String>,
    /// The ETag names the one version wanted (a checkpoint's manifest): every GET asks for it
    /// with If-Match, and another version is [`TransferError::ObjectChanged`].
    exact: bool,
}

/// An object wanted in exactly one version, by [`super::Transfers::download_exact`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub url: S3Url,
    pub dest: PathBuf,
    pub size: u64,
    pub etag: String,
}

/// What [`super::Transfers::download_exact`] fetched, and what it could not, with why.
#[derive(Debug, Default)]
pub struct Fetched {
    pub copied: Transfer,
    pub done: Vec<Wanted>,
    pub failed: Vec<(Wanted, TransferError)>,
}

/// Fetch each wanted object (folders created first); unlike a prefix download, what can be
/// fetched is kept when others fail.
pub(super) async fn fetch_each(
    copy: &Session<'_>,
    wanted: Vec<Wanted>,
) -> Result<Fetched, TransferError> {
    let dirs: BTreeSet<PathBuf> = wanted
        .iter()
        .filter_map(|w| w.dest.parent().map(Path::to_path_buf))
        .collect();
    let first = wanted.first().map(|w| w.dest.clone()).unwrap_or_default();
    sink::blocking(move || dirs.iter().try_for_each(std::fs::create_dir_all))
        .await
        .map_err(TransferError::local("prepare", first))?;
    let fetches: Vec<(Wanted, Fetch)> = wanted
        .into_iter()
        .map(|w| {
            let f = Fetch {
                url: w.url.clone(),
                dest: w.dest.clone(),
                size: w.size,
                etag: Some(w.etag.clone()),
                exact: true,
            };
            (w, f)
        })
        .collect();
    let limit = copy.limits.requests_in_flight;
    let done = copy.rounds(fetches, limit, |(_, f)| fetch(copy, f)).await;
    if let Some(e) = done.fatal {
        return Err(e);
    }
    Ok(Fetched {
        copied: done.copied,
        done: done.done.into_iter().map(|((w, _), _)| w).collect(),
        failed: done.failed.into_iter().map(|((w, _), e)| (w, e)).collect(),
    })
}

pub(super) async fn run(
    copy: &Session<'_>,
    src: &S3Url,
    dest: &Path,
) -> Result<Transfer, TransferError> {
    let (fetches, folders) = if copy.opts.recursive {
        let listed = list(copy, src).await?;
        plan_prefix(copy, src, dest, listed)?
    } else {
        (single(copy, src, dest).await?, Vec::new())
    };

    // Every folder first, once, so the file tasks only write.
    let mut dirs: BTreeSet<PathBuf> = folders.into_iter().collect();
    dirs.insert(dest.to_path_buf());
    dirs.extend(
        fetches
            .iter()
            .filter_map(|f| f.dest.parent().map(Path::to_path_buf)),
    );
    sink::blocking(move || {
        for d in &dirs {
            std::fs::create_dir_all(d).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot create folder {}: {e}", d.display()),
                )
            })?;
        }
        Ok(())
    })
    .await
    .map_err(TransferError::local("prepare", dest))?;

    let limit = copy.limits.requests_in_flight;
    let done = copy.rounds(fetches, limit, |f| fetch(copy, f)).await;
    if let Some(e) = done.fatal {
        return Err(e);
    }
    // All or nothing: the first failure, and how many more there were.
    let mut failed = done.failed.into_iter().map(|(_, e)| e);
    match failed.next() {
        None => Ok(done.copied),
        Some(first) => match failed.count() {
            0 => Err(first),
            more => Err(TransferError::Many {
                first: Box::new(first),
                more,
            }),
        },
    }
}

/// A listed object: key, size, ETag.
type Listed = (String, u64, Option<String>);

/// Every object below the prefix, page by page; a page that failed transiently is asked for
/// again (after the same pauses as a round of files), from where the listing was.
async fn list(copy: &Session<'_>, src: &S3Url) -> Result<Vec<Listed>, TransferError> {
    let prefix = src.dir_prefix();
    let mut listed = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut pauses = ROUND_PAUSES.iter();
        let page = loop {
            let asked = copy
                .client
                .list_objects_v2()
                .bucket(src.bucket())
                .prefix(&prefix)
                .set_continuation_token(token.clone())
                .send()
                .await;
            let cause = match asked {
                Ok(page) => break page,
                Err(e) => S3Cause::from_sdk(&e),
            };
            let err = if cause.is("NoSuchBucket") {
                TransferError::NoSuchBucket {
                    bucket: src.bucket().to_string(),
                }
            } else {
                TransferError::List {
                    url: src.clone(),
                    cause,
                }
            };
            match pauses.next() {
                Some(pause) if err.failure() == Failure::Transient => {
                    copy.warn(format!(
                        "download: listing {src} failed ({err}); trying again in {} s",
                        pause.as_secs()
                    ));
                    tokio::time::sleep(*pause).await;
                }
                _ => return Err(err),
            }
        };
        for o in page.contents() {
            if let Some(key) = o.key() {
                let size = o.size().unwrap_or(0).max(0) as u64;
                listed.push((key.to_string(), size, o.e_tag().map(str::to_string)));
            }
        }
        token = page.next_continuation_token().map(str::to_string);
        if page.is_truncated() != Some(true) || token.is_none() {
            return Ok(listed);
        }
    }
}

/// Decide where every listed key goes, before any byte is written: a key that would land
/// outside `dest` stops the copy here.
fn plan_prefix(
    copy: &Session<'_>,
    src: &S3Url,
    dest: &Path,
    listed: Vec<Listed>,
) -> Result<(Vec<Fetch>, Vec<PathBuf>), TransferError> {
    let prefix = src.dir_prefix();
    let mut fetches = Vec::new();
    let mut folders = Vec::new();
    for (key, size, etag) in listed {
        // The listing only returns keys below the prefix; skip anything else defensively.
        let Some(relative) = key.strip_prefix(&prefix) else {
            continue;
        };
        // Excluded keys are skipped before they are judged: excluding a key that cannot be
        // placed is the way to copy the rest of such a prefix.
        if !copy.opts.includes(relative.trim_end_matches('/')) {
            continue;
        }
        // A key S3Url refuses (`//`, over-long) is reported below the prefix's URL.
        let url = S3Url::new(src.bucket(), &key).unwrap_or_else(|_| src.join(relative));
        let placement = plan::placement(relative).map_err(|why| TransferError::UnsafeKey {
            url: url.clone(),
            why,
        })?;
        match placement {
            Placement::Root => {}
            Placement::Folder(p) => folders.push(dest.join(p)),
            Placement::File(p) => fetches.push(Fetch {
                url,
                dest: dest.join(p),
                size,
                etag,
                exact: false,
            }),
        }
    }
    Ok((fetches, folders))
}

/// Without `--recursive`: the one object at the URL, into `dest/<its name>`.
async fn single(copy: &Session<'_>, src: &S3Url, dest: &Path) -> Result<Vec<Fetch>, TransferError> {
    let key = src.key();
    let name = match key.rsplit('/').next() {
        Some(n) if !n.is_empty() => n,
        _ => return Err(TransferError::NotAnObject { url: src.clone() }),
    };
    if let Err(why) = plan::placement(name) {
        return Err(TransferError::UnsafeKey {
            url: src.clone(),
            why,
        });
    }
    if !copy.opts.includes(name) {
        return Ok(Vec::new());
    }
    let head = copy
        .client
        .head_object()
        .bucket(src.bucket())
        .key(key)
        .send()
        .await;
    let head = match head {
        Ok(h) => h,
        Err(e) => {
            let cause = S3Cause::from_sdk(&e);
            if cause.is("NotFound") || cause.is("NoSuchKey") || cause.is("NoSuchBucket") {
                return Err(missing(copy, src).await);
            }
            return Err(TransferError::Get {
                url: src.clone(),
                cause,
            });
        }
    };
    Ok(vec![Fetch {
        url: src.clone(),
        dest: dest.join(name),
        size: head.content_length().unwrap_or(0).max(0) as u64,
        etag: head.e_tag().map(str::to_string),
        exact: false,
    }])
}

/// HEAD answers a bare 404 for a missing key and a missing bucket alike: ask about the bucket.
async fn missing(copy: &Session<'_>, src: &S3Url) -> TransferError {
    match copy.client.head_bucket().bucket(src.bucket()).send().await {
        Err(e)
            if S3Cause::from_sdk(&e).is("NotFound") || S3Cause::from_sdk(&e).is("NoSuchBucket") =>
        {
            TransferError::NoSuchBucket {
                bucket: src.bucket().to_string(),
            }
        }
        _ => TransferError::NoSuchKey { url: src.clone() },
    }
}

async fn fetch(copy: &Session<'_>, f: Fetch) -> Result<u64, TransferError> {
    if f.size > copy.limits.multipart_threshold {
        fetch_ranged(copy, &f).await?;
    } else {
        let mut attempt = 1;
        loop {
            match fetch_whole(copy, &f).await {
                Err(TransferError::Body { .. }) if attempt < BODY_ATTEMPTS => attempt += 1,
                r => break r?,
            }
        }
    }
    copy.file_line(|| {
        format!(
            "download: {} -> {} ({})",
            f.url,
            f.dest.display(),
            plan::human_bytes(f.size)
        )
    });
    Ok(f.size)
}

/// One GET, streamed to disk with its digest computed on the way (no second read). What the
/// digest is (MD5, S3's checksum, none) is decided from the answer: only it says whether the
/// object is encrypted with KMS or SSE-C.
async fn fetch_whole(copy: &Session<'_>, f: &Fetch) -> Result<(), TransferError> {
    let tmp = sink::partial_path(&f.dest);
    let guard = PartialGuard::new(tmp.clone());
    let _permit = copy.permit().await;
    let resp = copy
        .client
        .get_object()
        .bucket(f.url.bucket())
        .key(f.url.key())
        .checksum_mode(ChecksumMode::Enabled)
        .set_if_match(f.etag.clone().filter(|_| f.exact))
        .send()
        .await
        .map_err(|e| get_error(f, S3Cause::from_sdk(&e)))?;
    let not_md5 =
        verify::etag_is_not_md5(resp.server_side_encryption(), resp.sse_customer_algorithm());
    let answered = Answered {
        crc64nvme: resp.checksum_crc64_nvme(),
        crc32c: resp.checksum_crc32_c(),
        crc32: resp.checksum_crc32(),
        sha256: resp.checksum_sha256(),
        sha1: resp.checksum_sha1(),
        kind: resp.checksum_type(),
    };
    let check = Check::decide(f.etag.as_deref(), not_md5, answered.full_object());
    let mut hasher = check.hasher();
    let mut body = resp.body;
    let mut out = Sink::new(tmp.clone(), None, 0);
    let mut received = 0u64;
    while let Some(chunk) = body.try_next().await.map_err(|e| TransferError::Body {
        url: f.url.clone(),
        why: chain(&e),
    })? {
        received += chunk.len() as u64;
        if received > f.size {
            break;
        }
        hasher.update(&chunk);
        out.write(&chunk)
            .await
            .map_err(TransferError::local("write", &tmp))?;
    }
    check_size(f, received)?;
    check.verify(hasher).map_err(|why| damaged(f, why))?;
    out.finish(Some(&f.dest))
        .await
        .map_err(TransferError::local("write", &f.dest))?;
    guard.disarm();
    if not_md5 {
        copy.verified.encrypted(&check);
    }
    Ok(())
}

/// Ranged GETs in parallel into one pre-sized file. Each part's length is checked as it
/// arrives; every part asks for the listed ETag (If-Match), so parts of two versions of an
/// object cannot be stitched together. The digest (the MD5 of a plain ETag; for an object
/// encrypted with KMS or SSE-C, S3's full-object checksum from a HEAD, where it has one) is
/// computed after the parts land, by re-reading the file, which is hot in the page cache:
/// hashing while parts arrive out of order would need them all held in memory.
async fn fetch_ranged(copy: &Session<'_>, f: &Fetch) -> Result<(), TransferError> {
    let tmp = sink::partial_path(&f.dest);
    let guard = PartialGuard::new(tmp.clone());
    let file = sink::presized(&tmp, f.size)
        .await
        .map_err(TransferError::local("create", &tmp))?;
    let part_size = plan::part_size(f.size, copy.limits.part_size);
    let parts = plan::parts(f.size, part_size);
    let not_md5 = AtomicBool::new(false);
    futures::stream::iter(parts)
        .map(|range| fetch_part(copy, f, &tmp, &file, range, &not_md5))
        .buffer_unordered(copy.limits.requests_in_flight)
        .try_collect::<Vec<()>>()
        .await?;
    drop(file);
    let not_md5 = not_md5.load(Ordering::Relaxed);
    // A ranged answer carries no checksum of the whole object; a HEAD does.
    let checksum = if not_md5 {
        full_object_checksum(copy, f).await?
    } else {
        None
    };
    let check = Check::decide(f.etag.as_deref(), not_md5, checksum);
    if check != Check::Size {
        let (path, c) = (tmp.clone(), check.clone());
        sink::blocking(move || digest_file(&path, &c))
            .await
            .map_err(TransferError::local("read back", &tmp))?
            .map_err(|why| damaged(f, why))?;
    }
    sink::commit(&tmp, &f.dest)
        .await
        .map_err(TransferError::local("move into place", &f.dest))?;
    guard.disarm();
    if not_md5 {
        copy.verified.encrypted(&check);
    }
    Ok(())
}

async fn full_object_checksum(
    copy: &Session<'_>,
    f: &Fetch,
) -> Result<Option<(aws_smithy_checksums::ChecksumAlgorithm, String)>, TransferError> {
    let _permit = copy.permit().await;
    let head = copy
        .client
        .head_object()
        .bucket(f.url.bucket())
        .key(f.url.key())
        .checksum_mode(ChecksumMode::Enabled)
        .set_if_match(f.etag.clone())
        .send()
        .await
        .map_err(|e| get_error(f, S3Cause::from_sdk(&e)))?;
    Ok(Answered {
        crc64nvme: head.checksum_crc64_nvme(),
        crc32c: head.checksum_crc32_c(),
        crc32: head.checksum_crc32(),
        sha256: head.checksum_sha256(),
        sha1: head.checksum_sha1(),
        kind: head.checksum_type(),
    }
    .full_object())
}

async fn fetch_part(
    copy: &Session<'_>,
    f: &Fetch,
    tmp: &Path,
    file: &Arc<std::fs::File>,
    range: Range<u64>,
    not_md5: &AtomicBool,
) -> Result<(), TransferError> {
    let mut attempt = 1;
    loop {
        match fetch_part_once(copy, f, tmp, file, range.clone(), not_md5).await {
            Err(TransferError::Body { .. }) if attempt < BODY_ATTEMPTS => attempt += 1,
            r => return r,
        }
    }
}

async fn fetch_part_once(
    copy: &Session<'_>,
    f: &Fetch,
    tmp: &Path,
    file: &Arc<std::fs::File>,
    range: Range<u64>,
    not_md5: &AtomicBool,
) -> Result<(), TransferError> {
    let _permit = copy.permit().await;
    let resp = copy
        .client
        .get_object()
        .bucket(f.url.bucket())
        .key(f.url.key())
        .range(format!("bytes={}-{}", range.start, range.end - 1))
        .set_if_match(f.etag.clone())
        .send()
        .await
        .map_err(|e| get_error(f, S3Cause::from_sdk(&e)))?;
    if verify::etag_is_not_md5(resp.server_side_encryption(), resp.sse_customer_algorithm()) {
        not_md5.store(true, Ordering::Relaxed);
    }
    let mut body = resp.body;
    let mut out = Sink::new(tmp.to_path_buf(), Some(file.clone()), range.start);
    let want = range.end - range.start;
    let mut received = 0u64;
    while let Some(chunk) = body.try_next().await.map_err(|e| TransferError::Body {
        url: f.url.clone(),
        why: chain(&e),
    })? {
        received += chunk.len() as u64;
        if received > want {
            break;
        }
        out.write(&chunk)
            .await
            .map_err(TransferError::local("write", tmp))?;
    }
    if received != want {
        return Err(damaged(
            f,
            format!(
                "bytes {}-{} came back with {received} bytes instead of {want}",
                range.start,
                range.end - 1
            ),
        ));
    }
    out.finish(None)
        .await
        .map_err(TransferError::local("write", tmp))
}

fn get_error(f: &Fetch, cause: Box<S3Cause>) -> TransferError {
    let url = &f.url;
    if cause.is("NoSuchBucket") {
        TransferError::NoSuchBucket {
            bucket: url.bucket().to_string(),
        }
    } else if cause.is("NoSuchKey") {
        TransferError::NoSuchKey { url: url.clone() }
    } else if cause.is("PreconditionFailed") {
        TransferError::ObjectChanged { url: url.clone() }
    } else {
        TransferError::Get {
            url: url.clone(),
            cause,
        }
    }
}

fn check_size(f: &Fetch, received: u64) -> Result<(), TransferError> {
    if received == f.size {
        return Ok(());
    }
    Err(damaged(
        f,
        format!("it has {received} bytes where the listing said {}", f.size),
    ))
}

fn damaged(f: &Fetch, why: String) -> TransferError {
    TransferError::Integrity {
        url: f.url.clone(),
        path: f.dest.clone(),
        why,
    }
}

/// Run the check's digest over a file; `Ok(Err(why))` when it does not match.
fn digest_file(path: &Path, check: &Check) -> std::io::Result<Result<(), String>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = check.hasher();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(check.verify(hasher))
}
