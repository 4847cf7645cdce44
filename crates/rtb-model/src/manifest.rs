//! The batch manifest: one JSON document in S3 that holds every row of an AWS Batch array job,
//! so that 10,000 jobs are one `SubmitJob` call. The client writes it; each array child (the
//! runner, `RTB_MANIFEST=s3://bucket/key.json`) reads it and picks its own row by index.
//!
//! ```json
//! {"jobs": [{"job_id": "scene-001", "settings": {"COMMAND": "render(1)", "OUTPUT_BUCKET": "s3://..."}}]}
//! ```
//!
//! A row's `settings` are contract variables (`crate::contract`) and are applied as the
//! child's environment, over what the container was started with.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The runner's variable that names the manifest (an `s3://bucket/key` URL).
pub const MANIFEST_VAR: &str = "RTB_MANIFEST";
/// Set by AWS Batch in each array child: the child's index, from 0.
pub const ARRAY_INDEX_VAR: &str = "AWS_BATCH_JOB_ARRAY_INDEX";
/// Set by AWS Batch in every job: an array child's is `<parent uuid>:<index>`.
pub const BATCH_JOB_ID_VAR: &str = "AWS_BATCH_JOB_ID";
/// Set by AWS Batch in every job: the attempt's number, from 1 (each retry is a new attempt).
pub const BATCH_ATTEMPT_VAR: &str = "AWS_BATCH_JOB_ATTEMPT";

/// The whole document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub jobs: Vec<Row>,
}

/// One job of the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub job_id: String,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// Why no row could be picked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("neither {ARRAY_INDEX_VAR} nor an index suffix in {BATCH_JOB_ID_VAR} ('<id>:<n>') is set: is this an array child of the batch?")]
    NoIndex,
    #[error("{var}='{value}' is not an array index")]
    BadIndex { var: &'static str, value: String },
    #[error("the manifest has no row {index} (it has {rows}): was it rewritten after submitting?")]
    NoRow { index: usize, rows: usize },
}

impl Manifest {
    /// The row of the array child whose environment has `array_index` (AWS Batch's
    /// `AWS_BATCH_JOB_ARRAY_INDEX`) and `batch_job_id` (`AWS_BATCH_JOB_ID`). The index wins;
    /// without it the numeric suffix of the job id is used (moto sets no array index).
    pub fn row_for(
        &self,
        array_index: Option<&str>,
        batch_job_id: Option<&str>,
    ) -> Result<(usize, &Row), RowError> {
        let index = child_index(array_index, batch_job_id)?;
        self.jobs
            .get(index)
            .map(|row| (index, row))
            .ok_or(RowError::NoRow {
                index,
                rows: self.jobs.len(),
            })
    }
}

/// An array child's index: `AWS_BATCH_JOB_ARRAY_INDEX`, else the `:<n>` suffix of
/// `AWS_BATCH_JOB_ID`. Empty values count as absent.
pub fn child_index(
    array_index: Option<&str>,
    batch_job_id: Option<&str>,
) -> Result<usize, RowError> {
    let parse = |var: &'static str, value: &str| {
        value.parse::<usize>().map_err(|_| RowError::BadIndex {
            var,
            value: value.to_string(),
        })
    };
    if let Some(i) = array_index.map(str::trim).filter(|v| !v.is_empty()) {
        return parse(ARRAY_INDEX_VAR, i);
    }
    match batch_job_id
        .map(str::trim)
        .and_then(|id| id.rsplit_once(':'))
    {
        Some((_, suffix)) => parse(BATCH_JOB_ID_VAR, suffix),
        None => Err(RowError::NoIndex),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(n: usize) -> Manifest {
        Manifest {
            jobs: (0..n)
                .map(|i| Row {
                    job_id: format!("j{i}"),
                    settings: BTreeMap::from([("COMMAND".to_string(), format!("disp({i})"))]),
                })
                .collect(),
        }
    }

    #[test]
    fn index_comes_from_the_array_index_then_the_job_id_suffix() {
        type Case<'a> = (Option<&'a str>, Option<&'a str>, Result<usize, RowError>);
        let cases: &[Case] = &[
            (Some("2"), Some("uuid:5"), Ok(2)),
            (None, Some("0d9f-11aa:5"), Ok(5)),
            (Some(""), Some("uuid:1"), Ok(1)),
            (None, Some("uuid"), Err(RowError::NoIndex)),
            (None, None, Err(RowError::NoIndex)),
            (
                Some("x"),
                None,
                Err(RowError::BadIndex {
                    var: ARRAY_INDEX_VAR,
                    value: "x".into(),
                }),
            ),
            (
                None,
                Some("uuid:-1"),
                Err(RowError::BadIndex {
                    var: BATCH_JOB_ID_VAR,
                    value: "-1".into(),
                }),
            ),
        ];
        for (index, id, want) in cases {
            assert_eq!(&child_index(*index, *id), want, "{index:?} {id:?}");
        }
    }

    #[test]
    fn rows_are_picked_by_index_and_a_missing_one_is_named() {
        let m = manifest(3);
        let (i, row) = m.row_for(None, Some("u:2")).unwrap();
        assert_eq!((i, row.job_id.as_str()), (2, "j2"));
        assert_eq!(
            m.row_for(Some("3"), None).unwrap_err().to_string(),
            "the manifest has no row 3 (it has 3): was it rewritten after submitting?"
        );
    }

    #[test]
    fn the_document_round_trips_and_settings_may_be_absent() {
        let m = manifest(2);
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), m);
        let bare: Manifest = serde_json::from_str(r#"{"jobs":[{"job_id":"a"}]}"#).unwrap();
        assert!(bare.jobs[0].settings.is_empty());
    }
}
