//! Uploads of a given list of files (what a checkpoint sends): the folder is listed once, the
//! caller decides which files go, and each sent file's version (its stamp, unchanged during the
//! upload) and ETag come back, so a manifest can name exactly what is in S3.

use std::path::{Path, PathBuf};

use rtb_model::{S3Url, Skipped};

use super::error::TransferError;
use super::upload::{put, walk, Put, Stamp};
use super::{CopyOptions, Session};

/// A regular file below a folder: its path, its key below the folder (with `/`), and how it
/// looked when the folder was walked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    pub path: PathBuf,
    pub rel: String,
    pub stamp: Stamp,
}

/// A file sent by [`super::Transfers::upload_files`]: where it went, the version of it that
/// did (its stamp, unchanged during the upload), and the object's ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentFile {
    pub file: LocalFile,
    pub url: S3Url,
    pub etag: Option<String>,
}

/// Every regular file below `root` that an upload with `opts` would take, sorted by key, with
/// what cannot be taken and why (blocking: run it off the async threads). Only an unreadable
/// `root` is an error.
pub fn list_files(
    root: &Path,
    opts: &CopyOptions,
) -> Result<(Vec<LocalFile>, Vec<Skipped>), TransferError> {
    let walked = walk(root)?;
    let files = walked
        .found
        .into_iter()
        .filter(|f| opts.includes(&f.rel))
        .map(|f| LocalFile {
            path: f.path,
            rel: f.rel,
            stamp: f.stamp,
        })
        .collect();
    Ok((files, walked.skipped))
}

/// Upload each file to its URL, at most the session's limit at once; a file that changed while
/// it was uploaded is sent again as in a folder upload, and reported failed when it kept
/// changing. What each sent file's upload returned is kept (its stamp and ETag).
pub(super) async fn put_each(
    copy: &Session<'_>,
    files: Vec<(LocalFile, S3Url)>,
) -> Result<(Vec<SentFile>, Vec<Skipped>), TransferError> {
    let puts: Vec<Put> = files
        .into_iter()
        .map(|(f, url)| Put {
            path: f.path,
            rel: f.rel,
            url,
            stamp: f.stamp,
        })
        .collect();
    let limit = copy.limits.requests_in_flight;
    let done = copy.rounds(puts, limit, |p| put(copy, p)).await;
    if let Some(e) = done.fatal {
        return Err(e);
    }
    let sent = done
        .done
        .into_iter()
        .map(|(p, d)| SentFile {
            file: LocalFile {
                path: p.path,
                rel: p.rel,
                stamp: d.stamp,
            },
            url: p.url,
            etag: d.etag,
        })
        .collect();
    let skipped = done
        .failed
        .into_iter()
        .map(|(p, e)| Skipped {
            path: p.path.display().to_string(),
            reason: e.skip_reason(),
        })
        .collect();
    Ok((sent, skipped))
}
