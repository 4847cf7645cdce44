//! What can go wrong in a copy, said so that a user can act on it. S3 failures keep the
//! service's error code and message (never a Debug dump of the SDK error), and are sorted into
//! worth retrying, not worth retrying, and ending the whole copy.

use std::fmt;
use std::path::PathBuf;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use rtb_model::errors::chain;
use rtb_model::S3Url;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("bucket '{bucket}' does not exist (or is not visible to these credentials): check the bucket in the S3 URL")]
    NoSuchBucket { bucket: String },
    #[error(
        "{url} does not exist: check the key, or add --recursive to copy everything below a prefix"
    )]
    NoSuchKey { url: S3Url },
    #[error("{url} names a bucket or folder, not an object: add --recursive to copy everything below it")]
    NotAnObject { url: S3Url },
    #[error("{path} is a folder: add --recursive to upload everything in it")]
    NeedsRecursive { path: PathBuf },
    #[error("listing {url} failed: {cause}")]
    List { url: S3Url, cause: Box<S3Cause> },
    #[error("downloading {url} failed: {cause}")]
    Get { url: S3Url, cause: Box<S3Cause> },
    #[error("uploading {path} to {url} failed ({step}): {cause}")]
    Put {
        path: PathBuf,
        url: S3Url,
        step: &'static str,
        cause: Box<S3Cause>,
    },
    #[error("reading the body of {url} failed: {why}; run the copy again")]
    Body { url: S3Url, why: String },
    #[error("downloaded {url} to {path}, but {why}: the bytes were damaged on the way; run the copy again")]
    Integrity {
        url: S3Url,
        path: PathBuf,
        why: String,
    },
    #[error("{url} changed between the listing and the download (its ETag is not the listed one); run the copy again")]
    ObjectChanged { url: S3Url },
    #[error("refusing to download {url}: {why}; rename the object or --exclude it (nothing was written)")]
    UnsafeKey { url: S3Url, why: &'static str },
    #[error("{path} has a name that is not valid UTF-8, which an S3 key cannot hold: rename it")]
    BadName { path: PathBuf },
    #[error("{path} was deleted before it could be uploaded")]
    Vanished { path: PathBuf },
    #[error("{path} kept changing while it was uploaded ({attempts} attempts): the copy in S3 may be incomplete")]
    KeptChanging { path: PathBuf, attempts: u32 },
    #[error("cannot {action} {path}: {source}")]
    Local {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{first}; {more} other {} failed too", if *.more == 1 { "object" } else { "objects" })]
    Many {
        first: Box<TransferError>,
        more: usize,
    },
}

/// What a failed copy of one file means for the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// It may work a little later: throttling, a 5xx, a dropped connection, a damaged body.
    Transient,
    /// This file cannot be copied (AccessDenied on its key, a bad name): others still can.
    Permanent,
    /// Nothing in this copy can succeed (the bucket is gone, the credentials are refused).
    Fatal,
}

impl TransferError {
    pub(crate) fn local(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| TransferError::Local {
            action,
            path,
            source,
        }
    }

    pub(crate) fn failure(&self) -> Failure {
        use TransferError::*;
        match self {
            NoSuchBucket { .. } => Failure::Fatal,
            List { cause, .. } | Get { cause, .. } | Put { cause, .. } => cause.failure(),
            Body { .. } | Integrity { .. } => Failure::Transient,
            Local { source, .. } => match source.kind() {
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut => {
                    Failure::Transient
                }
                _ => Failure::Permanent,
            },
            Many { first, .. } => first.failure(),
            NoSuchKey { .. }
            | NotAnObject { .. }
            | NeedsRecursive { .. }
            | ObjectChanged { .. }
            | UnsafeKey { .. }
            | BadName { .. }
            | Vanished { .. }
            | KeptChanging { .. } => Failure::Permanent,
        }
    }

    /// Why one file was not uploaded, for the `skipped` list: the message without its path.
    pub(crate) fn skip_reason(&self) -> String {
        match self {
            TransferError::Put { step, cause, .. } => format!("{step} failed: {cause}"),
            TransferError::Vanished { .. } => "it was deleted before it could be uploaded".into(),
            TransferError::KeptChanging { attempts, .. } => format!(
                "it kept changing while it was uploaded ({attempts} attempts): the copy in S3 may be incomplete"
            ),
            TransferError::BadName { .. } => {
                "its name is not valid UTF-8, which an S3 key cannot hold: rename it".into()
            }
            TransferError::Local { action, source, .. } => format!("cannot {action} it: {source}"),
            other => other.to_string(),
        }
    }
}

/// An S3 failure reduced to what a person needs: the service's code and message when S3
/// answered, or the chain of causes (connection refused, timeout...) when it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Cause {
    pub code: Option<String>,
    pub message: String,
    /// The HTTP status, when S3 answered.
    pub status: Option<u16>,
    /// No answer at all: a timeout, a refused or dropped connection, a cut-off response.
    pub no_answer: bool,
}

/// Codes that say "later": S3's throttling and its own transient failures, and a body that
/// arrived damaged (BadDigest: S3 recomputed the checksum we sent and it did not match).
const TRANSIENT_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "BadDigest",
    "IncompleteBody",
    "OperationAborted",
];

/// Codes after which nothing else in the copy can succeed either.
const FATAL_CODES: &[&str] = &[
    "NoSuchBucket",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AccountProblem",
    "AllAccessDisabled",
];

impl S3Cause {
    /// Boxed: it rides in [`TransferError`], which stays small that way.
    pub fn from_sdk<E>(err: &SdkError<E, HttpResponse>) -> Box<Self>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let no_answer = matches!(
            err,
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        );
        Box::new(match err.code() {
            Some(code) => S3Cause {
                code: Some(code.to_string()),
                message: err
                    .message()
                    .map(str::to_string)
                    .unwrap_or_else(|| chain(err)),
                status,
                no_answer,
            },
            None => S3Cause {
                code: None,
                message: chain(err),
                status,
                no_answer,
            },
        })
    }

    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// Worth asking again a little later (throttling, a 5xx, no answer).
    pub fn is_transient(&self) -> bool {
        self.failure() == Failure::Transient
    }

    pub(crate) fn failure(&self) -> Failure {
        let code = self.code.as_deref().unwrap_or_default();
        if FATAL_CODES.contains(&code) {
            Failure::Fatal
        } else if self.no_answer
            || TRANSIENT_CODES.contains(&code)
            || matches!(self.status, Some(429 | 500..=599))
        {
            Failure::Transient
        } else {
            Failure::Permanent
        }
    }
}

impl fmt::Display for S3Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message)?,
            None => write!(f, "{}", self.message)?,
        }
        match self.code.as_deref() {
            Some("AccessDenied") | Some("Forbidden") => write!(
                f,
                " (check the instance role's or credentials' S3 permissions for this bucket)"
            ),
            Some("InvalidAccessKeyId") | Some("SignatureDoesNotMatch") | Some("ExpiredToken") => {
                write!(f, " (check the AWS credentials the runner uses)")
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause(code: Option<&str>, status: Option<u16>, no_answer: bool) -> S3Cause {
        S3Cause {
            code: code.map(str::to_string),
            message: "m".into(),
            status,
            no_answer,
        }
    }

    #[test]
    fn failures_are_sorted_by_what_a_retry_can_do() {
        let table = [
            (
                cause(Some("SlowDown"), Some(503), false),
                Failure::Transient,
            ),
            (
                cause(Some("InternalError"), Some(500), false),
                Failure::Transient,
            ),
            (cause(None, Some(502), false), Failure::Transient),
            (cause(None, None, true), Failure::Transient),
            (
                cause(Some("BadDigest"), Some(400), false),
                Failure::Transient,
            ),
            (
                cause(Some("AccessDenied"), Some(403), false),
                Failure::Permanent,
            ),
            (
                cause(Some("InvalidArgument"), Some(400), false),
                Failure::Permanent,
            ),
            (
                cause(Some("NoSuchBucket"), Some(404), false),
                Failure::Fatal,
            ),
            (
                cause(Some("InvalidAccessKeyId"), Some(403), false),
                Failure::Fatal,
            ),
        ];
        for (c, want) in table {
            assert_eq!(c.failure(), want, "{c:?}");
        }
    }

    #[test]
    fn errors_stay_small() {
        // Clippy's large_enum_variant line; boxed causes keep every Result cheap to move.
        assert!(std::mem::size_of::<TransferError>() <= 128);
    }
}
