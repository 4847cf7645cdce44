//! `s3://bucket/prefix` locations, parsed once and validated with messages a user can act on.

use std::fmt;
use std::str::FromStr;

/// A bucket and an optional key prefix, as written `s3://bucket/some/prefix`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct S3Url {
    bucket: String,
    /// The key or key prefix, without a leading `/`; may be empty.
    key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum S3UrlError {
    #[error("'{0}' is not an S3 URL: it must start with s3:// (for example s3://my-bucket/renders/job-1)")]
    Scheme(String),
    #[error("'{0}' has no bucket name after s3://")]
    NoBucket(String),
    #[error("'{url}' has an invalid bucket name '{bucket}': {why}")]
    Bucket {
        url: String,
        bucket: String,
        why: &'static str,
    },
    #[error("'{0}' has an empty path segment ('//'), which S3 tools handle inconsistently")]
    EmptySegment(String),
    #[error("'{0}' has a key longer than S3's 1024-byte limit")]
    KeyTooLong(String),
}

impl S3Url {
    pub fn new(bucket: &str, key: &str) -> Result<Self, S3UrlError> {
        format!("s3://{bucket}/{key}").parse()
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key (or prefix) exactly as given, without a leading slash.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The key as a "folder" prefix: empty, or ending with exactly one `/`.
    pub fn dir_prefix(&self) -> String {
        if self.key.is_empty() || self.key.ends_with('/') {
            self.key.clone()
        } else {
            format!("{}/", self.key)
        }
    }

    /// A location below this one, treating this one as a folder.
    pub fn join(&self, relative: &str) -> S3Url {
        S3Url {
            bucket: self.bucket.clone(),
            key: format!("{}{}", self.dir_prefix(), relative.trim_start_matches('/')),
        }
    }
}

impl FromStr for S3Url {
    type Err = S3UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| S3UrlError::Scheme(s.to_string()))?;
        let (bucket, key) = match rest.split_once('/') {
            Some((b, k)) => (b, k),
            None => (rest, ""),
        };
        if bucket.is_empty() {
            return Err(S3UrlError::NoBucket(s.to_string()));
        }
        if let Some(why) = bucket_name_problem(bucket) {
            return Err(S3UrlError::Bucket {
                url: s.to_string(),
                bucket: bucket.to_string(),
                why,
            });
        }
        if key.contains("//") {
            return Err(S3UrlError::EmptySegment(s.to_string()));
        }
        if key.len() > 1024 {
            return Err(S3UrlError::KeyTooLong(s.to_string()));
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }
}

/// S3's bucket naming rules, reduced to the ones a typo breaks.
fn bucket_name_problem(bucket: &str) -> Option<&'static str> {
    if bucket.len() < 3 || bucket.len() > 63 {
        return Some("bucket names are 3 to 63 characters long");
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Some("bucket names use only lowercase letters, digits, '-' and '.'");
    }
    let first = bucket.as_bytes()[0];
    let last = bucket.as_bytes()[bucket.len() - 1];
    if !(first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric()) {
        return Some("bucket names start and end with a letter or digit");
    }
    if bucket.contains("..") {
        return Some("bucket names have no two adjacent periods");
    }
    None
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

impl serde::Serialize for S3Url {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for S3Url {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_and_prefix() {
        let u: S3Url = "s3://my-bucket/a/b c/ü".parse().unwrap();
        assert_eq!(u.bucket(), "my-bucket");
        assert_eq!(u.key(), "a/b c/ü");
        assert_eq!(u.dir_prefix(), "a/b c/ü/");
        assert_eq!(u.join("x.txt").key(), "a/b c/ü/x.txt");
    }

    #[test]
    fn bucket_only() {
        let u: S3Url = "s3://bucket".parse().unwrap();
        assert_eq!(u.key(), "");
        assert_eq!(u.dir_prefix(), "");
        assert_eq!(u.join("k").to_string(), "s3://bucket/k");
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "bucket/key",
            "s3:/bucket",
            "s3://",
            "s3:///key",
            "s3://UpperCase/x",
            "s3://ab",
            "s3://bucket_under/x",
            "s3://-bucket/x",
            "s3://bucket/a//b",
            "https://bucket.s3.amazonaws.com/x",
        ] {
            assert!(bad.parse::<S3Url>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn error_names_the_url() {
        let e = "bucket/key".parse::<S3Url>().unwrap_err().to_string();
        assert!(e.contains("bucket/key") && e.contains("s3://"), "{e}");
    }
}
