//! What can go wrong in a copy, said so that a user can act on it. S3 failures keep the
//! service's error code and message (never a Debug dump of the SDK error).

use std::fmt;
use std::path::PathBuf;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
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
    #[error("downloaded {url} to {path}, but {why}: the object changed during the copy or the bytes were damaged; run the copy again")]
    Integrity {
        url: S3Url,
        path: PathBuf,
        why: String,
    },
    #[error("refusing to download {url}: {why}; rename the object or --exclude it (nothing was written)")]
    UnsafeKey { url: S3Url, why: &'static str },
    #[error("{path} has a name that is not valid UTF-8, which an S3 key cannot hold: rename it")]
    BadName { path: PathBuf },
    #[error("cannot {action} {path}: {source}")]
    Local {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
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
}

/// An S3 failure reduced to what a person needs: the service's code and message when S3
/// answered, or the chain of causes (connection refused, timeout...) when it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Cause {
    pub code: Option<String>,
    pub message: String,
}

impl S3Cause {
    /// Boxed: it rides in [`TransferError`], which stays small that way.
    pub fn from_sdk<E, R>(err: &SdkError<E, R>) -> Box<Self>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug + 'static,
    {
        Box::new(match err.code() {
            Some(code) => S3Cause {
                code: Some(code.to_string()),
                message: err
                    .message()
                    .map(str::to_string)
                    .unwrap_or_else(|| chain(err)),
            },
            None => S3Cause {
                code: None,
                message: chain(err),
            },
        })
    }

    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
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

/// An error and its causes, `: `-joined, each message once. (The SDK's `DisplayErrorContext`
/// ends with a Debug dump of the whole error, which is not for people.)
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        let message = e.to_string();
        if !message.is_empty() && !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chains_read_as_one_line() {
        let e = Outer(std::io::Error::other("connection reset"));
        assert_eq!(chain(&e), "outer: connection reset");
    }

    #[test]
    fn errors_stay_small() {
        // Clippy's large_enum_variant line; boxed causes keep every Result cheap to move.
        assert!(std::mem::size_of::<TransferError>() <= 128);
    }
}
