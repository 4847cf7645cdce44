//! How a downloaded object is checked. A plain object's ETag is its MD5; an object encrypted
//! with SSE-KMS or SSE-C has an ETag of the same shape that is *not* its MD5, so for those the
//! check is S3's own full-object checksum where the object has one, else its size. S3 says which
//! encryption an object has in the GetObject/HeadObject answer, not in the listing.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use aws_sdk_s3::types::{ChecksumType, ServerSideEncryption};
use aws_smithy_checksums::ChecksumAlgorithm;
use md5::{Digest, Md5};

use super::plan;

/// Whether S3's answer says the ETag is not the MD5: SSE-KMS (`aws:kms`, `aws:kms:dsse`) or
/// SSE-C (a customer algorithm is named).
pub(crate) fn etag_is_not_md5(sse: Option<&ServerSideEncryption>, sse_c: Option<&str>) -> bool {
    sse_c.is_some_and(|a| !a.is_empty()) || sse.is_some_and(|s| s.as_str().starts_with("aws:kms"))
}

/// The checksums one GetObject/HeadObject answer carried (with checksum mode on).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Answered<'a> {
    pub crc64nvme: Option<&'a str>,
    pub crc32c: Option<&'a str>,
    pub crc32: Option<&'a str>,
    pub sha256: Option<&'a str>,
    pub sha1: Option<&'a str>,
    pub kind: Option<&'a ChecksumType>,
}

impl Answered<'_> {
    /// The checksum of the whole object, if S3 has one: not a composite of part checksums
    /// (`<base64>-<parts>`), which cannot be recomputed from the bytes alone. Fastest first.
    pub(crate) fn full_object(&self) -> Option<(ChecksumAlgorithm, String)> {
        if matches!(self.kind, Some(ChecksumType::Composite)) {
            return None;
        }
        [
            (ChecksumAlgorithm::Crc64Nvme, self.crc64nvme),
            (ChecksumAlgorithm::Crc32c, self.crc32c),
            (ChecksumAlgorithm::Crc32, self.crc32),
            (ChecksumAlgorithm::Sha256, self.sha256),
            (ChecksumAlgorithm::Sha1, self.sha1),
        ]
        .into_iter()
        .find_map(|(a, v)| match v {
            Some(v) if !v.is_empty() && !v.contains('-') => Some((a, v.to_string())),
            _ => None,
        })
    }
}

/// What a downloaded object's bytes are compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    /// The ETag, which is the MD5 of an object put in one piece without KMS or SSE-C.
    Md5(String),
    /// S3's full-object checksum (base64, as S3 sends it).
    Checksum {
        algorithm: ChecksumAlgorithm,
        want: String,
    },
    /// Nothing to compare with but the size (always checked).
    Size,
}

impl Check {
    /// Decide from the listed ETag, whether S3 said the ETag is not an MD5, and the checksum S3
    /// has for the whole object. The MD5 is preferred where it is one (it is what the listing
    /// promised); a checksum covers the rest where there is one.
    pub(crate) fn decide(
        etag: Option<&str>,
        etag_not_md5: bool,
        checksum: Option<(ChecksumAlgorithm, String)>,
    ) -> Check {
        if !etag_not_md5 {
            if let Some(md5) = etag.and_then(plan::md5_etag) {
                return Check::Md5(md5);
            }
        }
        match checksum {
            Some((algorithm, want)) => Check::Checksum { algorithm, want },
            None => Check::Size,
        }
    }

    pub(crate) fn hasher(&self) -> Hasher {
        match self {
            Check::Md5(_) => Hasher::Md5(Md5::new()),
            Check::Checksum { algorithm, .. } => Hasher::Checksum(algorithm.into_impl()),
            Check::Size => Hasher::None,
        }
    }

    /// Compare what was computed over the bytes; `Err` says what differs.
    pub(crate) fn verify(&self, hasher: Hasher) -> Result<(), String> {
        match (self, hasher) {
            (Check::Md5(want), Hasher::Md5(h)) => {
                let got = format!("{:x}", h.finalize());
                (&got == want)
                    .then_some(())
                    .ok_or_else(|| format!("its MD5 is {got} where the ETag says {want}"))
            }
            (Check::Checksum { algorithm, want }, Hasher::Checksum(h)) => {
                let got = aws_smithy_types::base64::encode(&h.finalize()[..]);
                (&got == want).then_some(()).ok_or_else(|| {
                    format!(
                        "its {} is {got} where S3 says {want}",
                        algorithm.as_str().to_ascii_uppercase()
                    )
                })
            }
            _ => Ok(()),
        }
    }
}

/// The running digest of a [`Check`].
pub(crate) enum Hasher {
    Md5(Md5),
    Checksum(Box<dyn aws_smithy_checksums::http::HttpChecksum>),
    None,
}

impl Hasher {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(bytes),
            Hasher::Checksum(h) => h.update(bytes),
            Hasher::None => {}
        }
    }
}

/// How the encrypted objects of one copy were checked, for one line at its end.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    by_checksum: AtomicU64,
    by_size: AtomicU64,
    algorithms: Mutex<BTreeSet<&'static str>>,
}

impl Tally {
    /// Count one object whose ETag is not its MD5.
    pub(crate) fn encrypted(&self, check: &Check) {
        match check {
            Check::Checksum { algorithm, .. } => {
                self.by_checksum.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut set) = self.algorithms.lock() {
                    set.insert(algorithm.as_str());
                }
            }
            _ => {
                self.by_size.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The line for the log, or None when no object was encrypted that way.
    pub(crate) fn line(&self, verb: &str) -> Option<String> {
        let checksum = self.by_checksum.load(Ordering::Relaxed);
        let size = self.by_size.load(Ordering::Relaxed);
        if checksum + size == 0 {
            return None;
        }
        let algorithms = self
            .algorithms
            .lock()
            .map(|s| {
                s.iter()
                    .map(|a| a.to_ascii_uppercase())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let mut parts = Vec::new();
        if checksum > 0 {
            parts.push(format!(
                "{checksum} verified with S3's checksum ({algorithms})"
            ));
        }
        if size > 0 {
            parts.push(format!(
                "{size} by size only (stored without a full-object checksum)"
            ));
        }
        let n = checksum + size;
        Some(format!(
            "{verb}: {n} object{} encrypted with SSE-KMS or SSE-C, whose ETag is not an MD5: {}",
            if n == 1 { " is" } else { "s are" },
            parts.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD5: &str = "\"0cc175b9c0f1b6a831c399e269772661\"";

    #[test]
    fn encryption_that_changes_the_etag() {
        use ServerSideEncryption as S;
        assert!(etag_is_not_md5(Some(&S::AwsKms), None));
        assert!(etag_is_not_md5(Some(&S::AwsKmsDsse), None));
        assert!(etag_is_not_md5(None, Some("AES256")));
        assert!(!etag_is_not_md5(Some(&S::Aes256), None));
        assert!(!etag_is_not_md5(None, None));
    }

    #[test]
    fn checks_follow_what_s3_said() {
        let crc = || Some((ChecksumAlgorithm::Crc32, "NSRBwg==".to_string()));
        let md5 = Check::Md5("0cc175b9c0f1b6a831c399e269772661".into());
        let by_crc = Check::Checksum {
            algorithm: ChecksumAlgorithm::Crc32,
            want: "NSRBwg==".into(),
        };
        let table = [
            // A plain object: its ETag is its MD5.
            (Some(MD5), false, None, md5.clone()),
            (Some(MD5), false, crc(), md5),
            // KMS / SSE-C: the same-looking ETag is not used; the checksum is, or the size.
            (Some(MD5), true, crc(), by_crc.clone()),
            (Some(MD5), true, None, Check::Size),
            // A multipart ETag is no MD5 either.
            (Some("\"abc-3\""), false, crc(), by_crc),
            (Some("\"abc-3\""), false, None, Check::Size),
            (None, false, None, Check::Size),
        ];
        for (etag, encrypted, checksum, want) in table {
            assert_eq!(
                Check::decide(etag, encrypted, checksum),
                want,
                "{etag:?} {encrypted}"
            );
        }
    }

    #[test]
    fn composite_checksums_are_not_full_object_ones() {
        let a = Answered {
            crc32: Some("NSRBwg==-3"),
            ..Default::default()
        };
        assert_eq!(a.full_object(), None);
        let a = Answered {
            crc32: Some("NSRBwg=="),
            kind: Some(&ChecksumType::Composite),
            ..Default::default()
        };
        assert_eq!(a.full_object(), None);
        let a = Answered {
            crc32: Some("NSRBwg=="),
            sha256: Some("x"),
            ..Default::default()
        };
        assert_eq!(
            a.full_object(),
            Some((ChecksumAlgorithm::Crc32, "NSRBwg==".into()))
        );
    }

    #[test]
    fn checksums_are_computed_over_the_bytes() {
        // "abc": CRC32 0x352441c2.
        let check = Check::Checksum {
            algorithm: ChecksumAlgorithm::Crc32,
            want: "NSRBwg==".into(),
        };
        let mut h = check.hasher();
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(check.verify(h), Ok(()));
        let mut h = check.hasher();
        h.update(b"abd");
        let e = check.verify(h).unwrap_err();
        assert!(e.contains("CRC32") && e.contains("NSRBwg=="), "{e}");
    }

    #[test]
    fn one_line_per_copy() {
        let t = Tally::default();
        assert_eq!(t.line("download"), None);
        t.encrypted(&Check::Checksum {
            algorithm: ChecksumAlgorithm::Crc32,
            want: String::new(),
        });
        t.encrypted(&Check::Size);
        let line = t.line("download").unwrap();
        assert!(
            line.contains("2 objects are encrypted")
                && line.contains("1 verified with S3's checksum (CRC32)")
                && line.contains("1 by size only"),
            "{line}"
        );
    }
}
