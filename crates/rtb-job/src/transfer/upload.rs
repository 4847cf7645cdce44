//! Local folder -> S3. Walk the folder, then put files concurrently; large files as multipart
//! uploads whose parts go in parallel, aborted if any part fails.
//!
//! Integrity: every PutObject and UploadPart carries a CRC32 of its body, computed by the SDK
//! from the bytes as they are sent (a header for in-memory bodies, an aws-chunked trailer for
//! bodies streamed from the file); S3 recomputes it and refuses a mismatch with `BadDigest`.

use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use futures::{StreamExt, TryStreamExt};
use rtb_model::{S3Url, Transfer};

use super::error::{S3Cause, TransferError};
use super::plan;
use super::Session;

/// Files up to this size are read into memory and sent in one piece; larger ones stream from
/// disk, so a hundred concurrent uploads never hold more than a few hundred MiB.
const IN_MEMORY_MAX: u64 = 1 << 20;

#[derive(Debug)]
struct Put {
    path: PathBuf,
    url: S3Url,
    size: u64,
}

pub(super) async fn run(
    copy: &Session<'_>,
    src: &Path,
    dest: &S3Url,
) -> Result<Transfer, TransferError> {
    let meta = tokio::fs::metadata(src)
        .await
        .map_err(TransferError::local("read", src))?;
    let puts = match (meta.is_dir(), copy.opts.recursive) {
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
        (false, false) => one_file(copy, src, dest, meta.len())?,
    };
    let limit = copy.limits.requests_in_flight;
    copy.for_each(puts, limit, |p| put(copy, p)).await
}

/// Without `--recursive`: the file goes to the URL's key, or below it when that ends in `/`.
fn one_file(
    copy: &Session<'_>,
    src: &Path,
    dest: &S3Url,
    size: u64,
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
        url,
        size,
    }])
}

async fn walk_all(copy: &Session<'_>, src: &Path, dest: &S3Url) -> Result<Vec<Put>, TransferError> {
    let root = src.to_path_buf();
    let (found, notes) = tokio::task::spawn_blocking(move || walk(&root))
        .await
        .map_err(|e| TransferError::local("walk", src)(std::io::Error::other(e)))??;
    for note in notes {
        copy.warn(note);
    }
    Ok(found
        .into_iter()
        .filter(|(_, rel, _)| copy.opts.includes(rel))
        .map(|(path, rel, size)| Put {
            path,
            url: dest.join(&rel),
            size,
        })
        .collect())
}

type Found = (PathBuf, String, u64);

/// Regular files below `root` (and symlinks to regular files), sorted by relative key. Folders
/// reached through symlinks are not entered (no loops, nothing outside the folder); sockets,
/// FIFOs and devices are skipped. Each skip is a note for the log.
fn walk(root: &Path) -> Result<(Vec<Found>, Vec<String>), TransferError> {
    let mut found = Vec::new();
    let mut notes = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder).map_err(TransferError::local("list", &folder))?;
        for entry in entries {
            let entry = entry.map_err(TransferError::local("list", &folder))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(TransferError::local("inspect", &path))?;
            let meta = if kind.is_symlink() {
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => m,
                    Ok(m) if m.is_dir() => {
                        notes.push(format!(
                            "upload: skipping {}: a symlink to a folder (not followed)",
                            path.display()
                        ));
                        continue;
                    }
                    Ok(_) | Err(_) => {
                        notes.push(format!(
                            "upload: skipping {}: a symlink to nothing uploadable",
                            path.display()
                        ));
                        continue;
                    }
                }
            } else if kind.is_dir() {
                folders.push(path);
                continue;
            } else if kind.is_file() {
                entry
                    .metadata()
                    .map_err(TransferError::local("inspect", &path))?
            } else {
                notes.push(format!(
                    "upload: skipping {}: not a regular file (socket, FIFO or device)",
                    path.display()
                ));
                continue;
            };
            let rel = path
                .strip_prefix(root)
                .ok()
                .and_then(plan::relative_key)
                .ok_or_else(|| TransferError::BadName { path: path.clone() })?;
            found.push((path, rel, meta.len()));
        }
    }
    found.sort_by(|a, b| a.1.cmp(&b.1));
    Ok((found, notes))
}

async fn put(copy: &Session<'_>, p: Put) -> Result<u64, TransferError> {
    if p.size > copy.limits.multipart_threshold {
        put_multipart(copy, &p).await?;
    } else {
        put_whole(copy, &p).await?;
    }
    copy.file_line(|| {
        format!(
            "upload: {} -> {} ({})",
            p.path.display(),
            p.url,
            plan::human_bytes(p.size)
        )
    });
    Ok(p.size)
}

async fn put_whole(copy: &Session<'_>, p: &Put) -> Result<(), TransferError> {
    let _permit = copy.permit().await;
    let body = body(p, 0, p.size).await?;
    copy.client
        .put_object()
        .bucket(p.url.bucket())
        .key(p.url.key())
        .content_length(p.size as i64)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(body)
        .send()
        .await
        .map_err(|e| put_error(p, "PutObject", S3Cause::from_sdk(&e)))?;
    Ok(())
}

async fn put_multipart(copy: &Session<'_>, p: &Put) -> Result<(), TransferError> {
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
    let result = put_parts(copy, p, &upload_id).await;
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

async fn put_parts(copy: &Session<'_>, p: &Put, upload_id: &str) -> Result<(), TransferError> {
    let part_size = plan::part_size(p.size, copy.limits.part_size);
    let mut parts: Vec<CompletedPart> =
        futures::stream::iter(plan::parts(p.size, part_size).into_iter().enumerate())
            .map(|(i, range)| async move {
                let number = i as i32 + 1;
                let _permit = copy.permit().await;
                let len = range.end - range.start;
                let out = copy
                    .client
                    .upload_part()
                    .bucket(p.url.bucket())
                    .key(p.url.key())
                    .upload_id(upload_id)
                    .part_number(number)
                    .content_length(len as i64)
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .body(body(p, range.start, len).await?)
                    .send()
                    .await
                    .map_err(|e| put_error(p, "UploadPart", S3Cause::from_sdk(&e)))?;
                Ok::<_, TransferError>(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .set_checksum_crc32(out.checksum_crc32().map(str::to_string))
                        .build(),
                )
            })
            .buffer_unordered(copy.limits.requests_in_flight)
            .try_collect()
            .await?;
    parts.sort_by_key(|part| part.part_number());
    copy.client
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
    Ok(())
}

/// `len` bytes of the file from `offset`: read into memory when small, streamed otherwise (the
/// SDK reopens the file if it retries).
async fn body(p: &Put, offset: u64, len: u64) -> Result<ByteStream, TransferError> {
    if len <= IN_MEMORY_MAX && offset == 0 && len == p.size {
        let bytes = tokio::fs::read(&p.path)
            .await
            .map_err(TransferError::local("read", &p.path))?;
        if bytes.len() as u64 != len {
            return Err(changed(p));
        }
        return Ok(ByteStream::from(bytes));
    }
    ByteStream::read_from()
        .path(&p.path)
        .offset(offset)
        .length(Length::Exact(len))
        .build()
        .await
        .map_err(|e| {
            TransferError::local("read", &p.path)(std::io::Error::other(super::error::chain(&e)))
        })
}

fn changed(p: &Put) -> TransferError {
    TransferError::Local {
        action: "upload",
        path: p.path.clone(),
        source: std::io::Error::other("its size changed while it was being uploaded"),
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
