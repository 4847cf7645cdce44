//! Decisions made before any call, pure: how a batch is submitted, the names its jobs get, and
//! what `setup` / `teardown` must do given what exists.
//!
//! ## Array job or one job per row
//! More than one job goes as an **array job**: one `SubmitJob` for up to [`ARRAY_MAX`] rows
//! (AWS's limit per array), with every row's settings in one S3 manifest that each child reads
//! by its index (`rtb_model::manifest`). 10,000 rows are one call and one object, where one job
//! per row would be 10,000 calls against SubmitJob's rate limit (tens per second) and 10,000
//! queue entries for AWS to schedule. A single job goes as a plain job with its settings as
//! container overrides: no manifest to write or read, and nothing gained from an array (AWS
//! refuses arrays of fewer than [`ARRAY_MIN`] anyway). The threshold is therefore 2: below it an
//! array is not possible; from it on, an array is never worse (each child still has its own id,
//! state, exit code, retries, and can be terminated alone).

use std::ops::Range;

use rtb_model::S3Url;

/// Where the client writes a run's manifests, under the first row's output bucket:
/// `_rtb-batch/<run>/`. The job role may read this folder, and only this one, of the output
/// buckets (`ami/iam/batch-job-role-policy.json`); the client may write only here.
pub const MANIFESTS_DIR: &str = "_rtb-batch";

/// AWS Batch's smallest and largest array.
pub const ARRAY_MIN: usize = 2;
pub const ARRAY_MAX: usize = 10_000;
/// AWS Batch's limit on a job name.
const NAME_MAX: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitPlan {
    /// One job per row (a batch of one).
    PerRow,
    /// One array job per range of rows, each at most [`ARRAY_MAX`] long.
    Array { chunks: Vec<Range<usize>> },
}

/// How `jobs` rows are submitted (see the module's docs for why).
pub fn submit_plan(jobs: usize) -> SubmitPlan {
    if jobs < ARRAY_MIN {
        return SubmitPlan::PerRow;
    }
    let mut chunks: Vec<Range<usize>> = (0..jobs)
        .step_by(ARRAY_MAX)
        .map(|start| start..(start + ARRAY_MAX).min(jobs))
        .collect();
    // A last chunk of one row cannot be an array: take one row from the chunk before it.
    if chunks.len() > 1 && chunks.last().is_some_and(|c| c.len() < ARRAY_MIN) {
        let n = chunks.len();
        chunks[n - 2].end -= 1;
        chunks[n - 1].start -= 1;
    }
    SubmitPlan::Array { chunks }
}

/// The folder of run `run`'s manifests in `bucket`.
pub fn manifests_folder(bucket: &str, run: &str) -> Result<S3Url, rtb_model::S3UrlError> {
    S3Url::new(bucket, &format!("{MANIFESTS_DIR}/{}/", clean_key(run)))
}

/// Array `k`'s manifest (of `arrays`) for batch `batch`, in `folder`: `<batch>/manifest.json`
/// for the usual single array, `<batch>/manifest-K.json` past 10,000 rows.
pub fn manifest_url(folder: &S3Url, batch: &str, k: usize, arrays: usize) -> S3Url {
    let name = match arrays {
        1 => "manifest.json".to_string(),
        _ => format!("manifest-{k}.json"),
    };
    folder.join(&format!("{}/{name}", clean_key(batch)))
}

/// A name as one S3 key segment.
fn clean_key(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// AWS Batch job names: letters, digits, `-` and `_`; anything else becomes `_`.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// What every job name of the batch starts with: `rtb-<batch>--`. The double dash ends the
/// batch's name, so ListJobs' prefix filter for batch `b1` never matches batch `b10`.
pub fn name_prefix(batch: &str) -> String {
    let mut b = clean(batch).replace("--", "-_");
    // Room for the suffix: the prefix takes at most half of the name.
    b.truncate(NAME_MAX / 2 - 6);
    format!("rtb-{b}--")
}

/// A job's name: the batch's prefix and `suffix` (a job id, or `array-N`), cut to 128.
pub fn job_name(batch: &str, suffix: &str) -> String {
    let mut name = format!("{}{}", name_prefix(batch), clean(suffix));
    name.truncate(NAME_MAX);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::single_range_in_vec_init)] // a list of one chunk is what is meant
    fn one_job_is_a_job_more_are_arrays_of_at_most_10000() {
        assert_eq!(submit_plan(0), SubmitPlan::PerRow);
        assert_eq!(submit_plan(1), SubmitPlan::PerRow);
        assert_eq!(submit_plan(2), SubmitPlan::Array { chunks: vec![0..2] });
        assert_eq!(
            submit_plan(10_000),
            SubmitPlan::Array {
                chunks: vec![0..10_000]
            }
        );
        assert_eq!(
            submit_plan(25_000),
            SubmitPlan::Array {
                chunks: vec![0..10_000, 10_000..20_000, 20_000..25_000]
            }
        );
        // Never an array of one.
        assert_eq!(
            submit_plan(10_001),
            SubmitPlan::Array {
                chunks: vec![0..9_999, 9_999..10_001]
            }
        );
    }

    #[test]
    fn names_are_clean_bounded_and_prefix_safe() {
        assert_eq!(
            job_name("lab renders", "scene/1"),
            "rtb-lab_renders--scene_1"
        );
        assert!(!job_name("b10", "x").starts_with(&name_prefix("b1")));
        assert!(!job_name("a--b", "x").starts_with(&name_prefix("a")));
        let long = job_name(&"b".repeat(300), &"s".repeat(300));
        assert_eq!(long.len(), 128);
        assert!(long.starts_with(&name_prefix(&"b".repeat(300))));
    }
}
