//! Where a job's records live in S3, so the runner that writes them and the client that reads
//! them agree on one layout.
//!
//! ```text
//! <OUTPUT_BUCKET>/                        the job's outputs (OUTPUT_SCRATCH copied up)
//! <OUTPUT_BUCKET>/_rtb-job/<job-id>/log/000001.log
//!                                   .../000002.log   log chunks: whole lines, in order, each
//!                                                     written once, ~1 s apart while lines come
//! <OUTPUT_BUCKET>/_rtb-job/<job-id>/result.json       the result record, written last
//! ```
//!
//! A batch job's attempts (a retry on the EC2 engine, AWS Batch's attempts, a resumed run)
//! each have a folder of their own under the job's: `<job records>/<run>-a<attempt>/`, with the
//! same log/ and result.json inside; the newest attempt is the job's current state.
//!
//! A per-job folder keeps a re-run into the same output location from mixing its log with an
//! earlier run's. Chunk names are zero-padded so S3's lexicographic listing is their order and a
//! reader can resume with `start-after`.

use crate::S3Url;

/// The folder under the output location that holds the runner's own records.
pub const RECORDS_DIR: &str = "_rtb-job";
/// The name of the result record inside a job's records folder.
pub const RESULT_NAME: &str = "result.json";
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

    /// The records of attempt `attempt` (from 1) of run `run`, under this job's folder.
    pub fn attempt(&self, run: &str, attempt: u32) -> JobRecords {
        JobRecords::at(self.root.join(&format!("{}/", attempt_dir(run, attempt))))
    }

    /// For an attempt's records: the job's folder, the run and the attempt.
    pub fn as_attempt(&self) -> Option<(JobRecords, String, u32)> {
        let prefix = self.root.dir_prefix();
        let inner = prefix.strip_suffix('/')?;
        let (parent, last) = match inner.rsplit_once('/') {
            Some((p, l)) => (format!("{p}/"), l),
            None => (String::new(), inner),
        };
        let (run, attempt) = parse_attempt_dir(last)?;
        let base = JobRecords {
            root: S3Url::new(self.root.bucket(), &parent).ok()?,
        };
        Some((base, run.to_string(), attempt))
    }
}

/// An attempt's folder name: `<run>-a<attempt>`.
pub fn attempt_dir(run: &str, attempt: u32) -> String {
    format!("{run}-a{attempt}")
}

/// The run and attempt of an attempt's folder name; `None` for any other name. Run ids start
/// with `r` (`r<UTC time>`).
pub fn parse_attempt_dir(name: &str) -> Option<(&str, u32)> {
    let (run, attempt) = name.trim_end_matches('/').rsplit_once("-a")?;
    let n: u32 = attempt.parse().ok().filter(|n| *n >= 1)?;
    run.starts_with('r').then_some((run, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_keys_sort_in_order_and_round_trip() {
        let r = JobRecords::under_output(&"s3://out/job 1".parse().unwrap(), "rr-abc");
        assert_eq!(r.log_prefix(), "job 1/_rtb-job/rr-abc/log/");
        assert_eq!(r.result_key(), "job 1/_rtb-job/rr-abc/result.json");
        let keys: Vec<String> = [1, 2, 10, 999].iter().map(|n| r.chunk_key(*n)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(r.chunk_seq(&r.chunk_key(42)), Some(42));
        assert_eq!(r.chunk_seq(&r.result_key()), None);
    }

    #[test]
    fn attempts_have_folders_of_their_own_and_are_read_back() {
        let job = JobRecords::under_output(&"s3://out/scene 1".parse().unwrap(), "j1");
        let a2 = job.attempt("r20261201T101500", 2);
        assert_eq!(
            a2.root().to_string(),
            "s3://out/scene 1/_rtb-job/j1/r20261201T101500-a2/"
        );
        assert_eq!(
            a2.chunk_key(1),
            "scene 1/_rtb-job/j1/r20261201T101500-a2/log/000001.log"
        );
        assert_eq!(
            a2.as_attempt(),
            Some((job.clone(), "r20261201T101500".to_string(), 2))
        );
        assert_eq!(job.as_attempt(), None);
        let at_root = JobRecords::at("s3://logs/r1-a3/".parse().unwrap());
        assert_eq!(
            at_root
                .as_attempt()
                .map(|(b, r, n)| (b.root().to_string(), r, n)),
            Some(("s3://logs/".to_string(), "r1".to_string(), 3))
        );
        for (name, want) in [
            ("r1-a2", Some(("r1", 2))),
            ("r1-a2/", Some(("r1", 2))),
            ("r1-a0", None),
            ("x1-a2", None),
            ("r1-ab", None),
            ("log", None),
        ] {
            assert_eq!(parse_attempt_dir(name), want, "{name}");
        }
    }

    #[test]
    fn direct_root_is_a_folder() {
        let r = JobRecords::at("s3://logs/here".parse().unwrap());
        assert_eq!(r.chunk_key(1), "here/log/000001.log");
        let r = JobRecords::at("s3://logs".parse().unwrap());
        assert_eq!(r.result_key(), "result.json");
    }
}
