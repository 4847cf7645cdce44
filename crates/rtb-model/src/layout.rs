//! Where a job's records live in S3, so the runner that writes them and the client that reads
//! them agree on one layout.
//!
//! ```text
//! <OUTPUT_BUCKET>/                        the job's outputs (OUTPUT_SCRATCH copied up)
//! <OUTPUT_BUCKET>/_rtb-job/<job-id>/log/000001.log
//!                                   .../000002.log   log chunks: whole lines, in order, each
//!                                                     written once, ~1 s apart while lines come
//! <OUTPUT_BUCKET>/_rtb-job/<job-id>/thumbnail.png     the job's main picture, ~320 px wide
//! <OUTPUT_BUCKET>/_rtb-job/<job-id>/result.json       the result record, written last
//! ```
//!
//! A per-job folder keeps a re-run into the same output location from mixing its log with an
//! earlier run's. Chunk names are zero-padded so S3's lexicographic listing is their order and a
//! reader can resume with `start-after`.

use crate::S3Url;

/// The folder under the output location that holds the runner's own records.
pub const RECORDS_DIR: &str = "_rtb-job";
/// The name of the result record inside a job's records folder.
pub const RESULT_NAME: &str = "result.json";
/// The name of the job's thumbnail inside its records folder.
pub const THUMBNAIL_NAME: &str = "thumbnail.png";
/// The runner keeps a thumbnail under this size, so that a batch's page with 100 of them
/// embedded stays under 2 MB.
pub const THUMBNAIL_BUDGET: usize = 10 * 1024;
/// How many digits a chunk sequence number is padded to (a million chunks at one a second is
/// eleven days of continuous output, well past the longest job).
const CHUNK_DIGITS: usize = 6;

/// The records location of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecords {
    root: S3Url,
}

impl JobRecords {
    /// The records folder for `job_id` under an output location.
    pub fn under_output(output: &S3Url, job_id: &str) -> Self {
        JobRecords {
            root: output.join(&format!("{RECORDS_DIR}/{job_id}/")),
        }
    }

    /// A records folder given directly (the runner's `LOG_BUCKET`).
    pub fn at(root: S3Url) -> Self {
        let root = S3Url::new(root.bucket(), &root.dir_prefix()).unwrap_or(root);
        JobRecords { root }
    }

    pub fn root(&self) -> &S3Url {
        &self.root
    }

    pub fn bucket(&self) -> &str {
        self.root.bucket()
    }

    /// The key prefix all log chunks share.
    pub fn log_prefix(&self) -> String {
        format!("{}log/", self.root.dir_prefix())
    }

    /// The key of chunk number `seq` (1-based).
    pub fn chunk_key(&self, seq: u64) -> String {
        format!(
            "{}{:0width$}.log",
            self.log_prefix(),
            seq,
            width = CHUNK_DIGITS
        )
    }

    /// The sequence number of a chunk key, or None for any other key.
    pub fn chunk_seq(&self, key: &str) -> Option<u64> {
        key.strip_prefix(&self.log_prefix())?
            .strip_suffix(".log")?
            .parse()
            .ok()
    }

    pub fn result_key(&self) -> String {
        format!("{}{RESULT_NAME}", self.root.dir_prefix())
    }

    pub fn thumbnail_key(&self) -> String {
        format!("{}{THUMBNAIL_NAME}", self.root.dir_prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_keys_sort_in_order_and_round_trip() {
        let r = JobRecords::under_output(&"s3://out/job 1".parse().unwrap(), "rr-abc");
        assert_eq!(r.log_prefix(), "job 1/_rtb-job/rr-abc/log/");
        assert_eq!(r.result_key(), "job 1/_rtb-job/rr-abc/result.json");
        assert_eq!(r.thumbnail_key(), "job 1/_rtb-job/rr-abc/thumbnail.png");
        let keys: Vec<String> = [1, 2, 10, 999].iter().map(|n| r.chunk_key(*n)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(r.chunk_seq(&r.chunk_key(42)), Some(42));
        assert_eq!(r.chunk_seq(&r.result_key()), None);
    }

    #[test]
    fn direct_root_is_a_folder() {
        let r = JobRecords::at("s3://logs/here".parse().unwrap());
        assert_eq!(r.chunk_key(1), "here/log/000001.log");
        let r = JobRecords::at("s3://logs".parse().unwrap());
        assert_eq!(r.result_key(), "result.json");
    }
}
