//! The records that let a job survive losing its instance: the checkpoint manifest (which of
//! OUTPUT_SCRATCH's files an attempt saved, complete, and where), and the interruption record
//! (a spot notice came). Where they live: [`crate::layout`].

use serde::{Deserialize, Serialize};

/// Version of the manifest's and the interruption record's shape; bumped only for
/// incompatible changes.
pub const CHECKPOINT_SCHEMA: u32 = 1;

/// What the newest checkpoint of an attempt holds. Written after every file it lists was
/// uploaded and found unchanged by the upload, so everything listed is complete; a file that
/// was being written is left out until a later checkpoint finds it still.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    pub job_id: String,
    /// The attempt that wrote it.
    pub attempt: u32,
    /// Manifests this attempt has written, this one included.
    pub seq: u64,
    /// RFC 3339 UTC.
    pub written_at: String,
    pub files: Vec<Entry>,
}

/// One complete file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative to OUTPUT_SCRATCH, with `/`.
    pub path: String,
    pub size: u64,
    /// The file's modification time when it was saved (RFC 3339 with nanoseconds), restored
    /// with it so that a later checkpoint sees it unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    /// Where its bytes are: this attempt's checkpoint folder, or an earlier attempt's when the
    /// file came from a restore and has not changed since.
    pub url: String,
    /// The object's ETag as S3 answered the upload: a restore asks for exactly this version.
    pub etag: String,
}

/// A spot interruption notice, as the runner saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interrupted {
    pub schema: u32,
    pub job_id: String,
    pub attempt: u32,
    /// `spot-interruption` (IMDS `spot/instance-action`) or `rebalance-recommendation`.
    pub notice: String,
    /// What AWS will do (`terminate`, `stop`, `hibernate`), for an interruption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// When AWS says it will act (interruption) or made the recommendation (rebalance).
    pub time: String,
    /// When the runner saw the notice (RFC 3339 UTC).
    pub seen_at: String,
}

/// `notice` of an [`Interrupted`] record for IMDS `spot/instance-action`.
pub const SPOT_INTERRUPTION: &str = "spot-interruption";
/// `notice` for IMDS `events/recommendations/rebalance`.
pub const REBALANCE: &str = "rebalance-recommendation";

impl Manifest {
    pub fn to_json(&self) -> String {
        // A struct of plain fields always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

impl Interrupted {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// An interruption (the instance is going away), not only a recommendation.
    pub fn is_interruption(&self) -> bool {
        self.notice == SPOT_INTERRUPTION
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_and_reads_without_optional_fields() {
        let m = Manifest {
            schema: CHECKPOINT_SCHEMA,
            job_id: "j1".into(),
            attempt: 2,
            seq: 3,
            written_at: "2026-12-01T10:00:00Z".into(),
            files: vec![Entry {
                path: "frames/f01.png".into(),
                size: 10,
                modified: Some("2026-12-01T09:59:58.123456789Z".into()),
                url: "s3://out/_rtb-job/j1/r1-a1/checkpoint/files/frames/f01.png".into(),
                etag: "\"0123\"".into(),
            }],
        };
        let back: Manifest = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(back, m);
        let bare: Entry =
            serde_json::from_str(r#"{"path":"a","size":1,"url":"s3://b/k","etag":"e"}"#).unwrap();
        assert_eq!(bare.modified, None);
    }

    #[test]
    fn interruption_record_round_trips() {
        let r = Interrupted {
            schema: CHECKPOINT_SCHEMA,
            job_id: "j1".into(),
            attempt: 1,
            notice: SPOT_INTERRUPTION.into(),
            action: Some("terminate".into()),
            time: "2026-12-01T10:02:00Z".into(),
            seen_at: "2026-12-01T10:00:00Z".into(),
        };
        let back: Interrupted = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(back, r);
        assert!(back.is_interruption());
    }
}
