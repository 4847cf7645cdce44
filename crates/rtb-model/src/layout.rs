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
//! <OUTPUT_BUCKET>/_rtb-job/<job-id>/checkpoint/manifest.json
//!                                   .../checkpoint/files/<path>   checkpoints (RTB_CHECKPOINT_EVERY):
//!                                                     OUTPUT_SCRATCH's files as last saved, and
//!                                                     the manifest of those that are complete
//! <OUTPUT_BUCKET>/_rtb-job/<job-id>/interrupted.json  written when a spot interruption notice came
//! ```
//!
//! A batch job's attempts (a retry on the EC2 engine, AWS Batch's attempts, a resumed run)
//! each have a folder of their own under the job's: `<job records>/<run>-a<attempt>/` (see
//! [`JobRecords::attempt`]), with the same layout inside; the newest attempt is the job's
//! current state.
//!
//! A per-job folder keeps a re-run into the same output location from mixing its log with an
//! earlier run's. Chunk names are zero-padded so S3's lexicographic listing is their order and a
//! reader can resume with `start-after`.

use crate::S3Url;

/// The folder under the output location that holds the runner's own records.
pub const RECORDS_DIR: &str = "_rtb-job";
/// The name of the result record inside a job's records folder.
pub const RESULT_NAME: &str = "result.json";
/// The folder, inside a job's or an attempt's records, that holds its checkpoints.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// The record a runner writes when a spot interruption notice comes.
pub const INTERRUPTED_NAME: &str = "interrupted.json";
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

    /// Where checkpointed copies of OUTPUT_SCRATCH's files go: `<root>checkpoint/files/`.
    pub fn checkpoint_files(&self) -> S3Url {
        self.root.join(&format!("{CHECKPOINT_DIR}/files/"))
    }

    /// The manifest of the newest checkpoint: which files are complete, and where.
    pub fn checkpoint_manifest_key(&self) -> String {
        format!("{}{CHECKPOINT_DIR}/manifest.json", self.root.dir_prefix())
    }

    pub fn interrupted_key(&self) -> String {
        format!("{}{INTERRUPTED_NAME}", self.root.dir_prefix())
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

    /// The records of the earlier attempts of the same run, newest first, when this folder is
    /// an attempt's (`.../<run>-a<N>/`): where a retry finds what the attempts before it saved.
    pub fn earlier_attempts(&self) -> Vec<(u32, JobRecords)> {
        let Some((base, run, n)) = self.as_attempt() else {
            return Vec::new();
        };
        (1..n).rev().map(|m| (m, base.attempt(&run, m))).collect()
    }

    /// The folder that holds this one (`s3://b/x/` for `s3://b/x/y/`), or None at the bucket's
    /// root.
    pub fn parent(&self) -> Option<S3Url> {
        let prefix = self.root.dir_prefix();
        let inner = prefix.strip_suffix('/')?;
        let parent = match inner.rsplit_once('/') {
            Some((p, _)) => format!("{p}/"),
            None => String::new(),
        };
        S3Url::new(self.root.bucket(), &parent).ok()
    }

    pub fn thumbnail_key(&self) -> String {
        format!("{}{THUMBNAIL_NAME}", self.root.dir_prefix())
    }
}

/// An attempt's folder name: `<run>-a<attempt>`.
pub fn attempt_dir(run: &str, attempt: u32) -> String {
    format!("{run}-a{attempt}")
}

/// The run and attempt of an attempt's folder name; `None` for any other name. Run ids start
/// with `r` (`r<UTC time>`), and the attempt is written as a plain number from 1.
pub fn parse_attempt_dir(name: &str) -> Option<(&str, u32)> {
    let name = name.trim_end_matches('/');
    let (run, attempt) = name.rsplit_once("-a")?;
    let n: u32 = attempt.parse().ok().filter(|n| *n >= 1)?;
    (run.starts_with('r') && n.to_string() == attempt).then_some((run, n))
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

    #[test]
    fn checkpoint_and_interruption_records_live_in_the_attempt() {
        let job = JobRecords::under_output(&"s3://out/run".parse().unwrap(), "j1");
        let a2 = job.attempt("r20261201T101500Z", 2);
        assert_eq!(
            a2.root().to_string(),
            "s3://out/run/_rtb-job/j1/r20261201T101500Z-a2/"
        );
        assert_eq!(
            a2.checkpoint_manifest_key(),
            "run/_rtb-job/j1/r20261201T101500Z-a2/checkpoint/manifest.json"
        );
        assert_eq!(
            a2.checkpoint_files().join("img/f 1.png").key(),
            "run/_rtb-job/j1/r20261201T101500Z-a2/checkpoint/files/img/f 1.png"
        );
        assert_eq!(
            a2.interrupted_key(),
            "run/_rtb-job/j1/r20261201T101500Z-a2/interrupted.json"
        );
        assert_eq!(a2.parent().unwrap(), *job.root());
    }

    #[test]
    fn earlier_attempts_are_the_same_runs_newest_first() {
        let job = JobRecords::under_output(&"s3://out".parse().unwrap(), "j1");
        let roots = |r: &JobRecords| {
            r.earlier_attempts()
                .into_iter()
                .map(|(n, r)| (n, r.root().to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            roots(&job.attempt("r1", 3)),
            vec![
                (2, "s3://out/_rtb-job/j1/r1-a2/".to_string()),
                (1, "s3://out/_rtb-job/j1/r1-a1/".to_string())
            ]
        );
        assert!(roots(&job.attempt("r1", 1)).is_empty());
        // A single run's folder is no attempt's: nothing earlier to find.
        assert!(roots(&job).is_empty());
        let top = JobRecords::at("s3://logs/r9-a2".parse().unwrap());
        assert_eq!(roots(&top), vec![(1, "s3://logs/r9-a1/".to_string())]);
    }

    #[test]
    fn attempt_folder_names_round_trip() {
        let table = [
            ("r20261201T101500Z-a1", Some(("r20261201T101500Z", 1))),
            ("r1-a12", Some(("r1", 12))),
            ("rx-a-a3", Some(("rx-a", 3))),
            ("x-a3", None),
            ("r1-a0", None),
            ("r1-a01", None),
            ("r1-a+1", None),
            ("-a1", None),
            ("checkpoint", None),
            ("log", None),
        ];
        for (name, want) in table {
            assert_eq!(parse_attempt_dir(name), want, "{name}");
        }
        assert_eq!(attempt_dir("r1", 7), "r1-a7");
    }
}
