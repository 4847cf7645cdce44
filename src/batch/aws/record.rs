//! What a submitted batch leaves on the workstation (next to the job registry).

use serde::{Deserialize, Serialize};

use crate::engine::aws_batch::Submitted;
use crate::registry::Registry;

/// What a submitted batch leaves on the workstation (next to the job registry), so `stop
/// --batch` and `status --batch` find its queue and jobs later.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchRecord {
    pub batch: String,
    /// The run (`r<UTC time>`): each job's attempts keep their records in `<run>-a<N>/`, and
    /// its jobs carry the tag `rtb:run`.
    #[serde(default)]
    pub run_id: Option<String>,
    /// How far the submission got (older records: submitted).
    #[serde(default)]
    pub state: Submission,
    /// One job per row, not arrays (`submit = "per-row"`).
    #[serde(default)]
    pub per_row: bool,
    pub engine: String,
    pub queue: String,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub submitted_at: String,
    /// Every row's job id, in order: what the submission is for.
    pub jobs: Vec<String>,
    /// What was submitted (AWS Batch's ids, the arrays): `status` asks AWS Batch by them.
    pub submitted: Submitted,
    /// What each job asked for (the RUNNABLE diagnosis compares it with the instance types).
    pub vcpus: u32,
    pub memory_mib: u32,
    /// The `--price` (or `[batch] price`) it was submitted with, USD per hour: what its jobs'
    /// cost is worked out at when no client followed them to their end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
}

/// How far a submission got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Submission {
    /// Recorded before the first SubmitJob: if it stays so, the client stopped while
    /// submitting, and AWS Batch (the jobs' `rtb:run` tag) knows what was submitted.
    Submitting,
    /// Stopped partway on an error: `submitted` holds what was.
    Incomplete,
    /// Every row was submitted.
    #[default]
    Submitted,
}

impl BatchRecord {
    fn path(registry: &Registry, batch: &str) -> std::path::PathBuf {
        registry
            .dir()
            .parent()
            .unwrap_or(registry.dir())
            .join("batches")
            .join(format!("{batch}.json"))
    }

    /// The record of the AWS Batch submission a registry entry's job belongs to, if any.
    pub fn of_entry(
        registry: &Registry,
        entry: Option<&crate::registry::Entry>,
    ) -> Option<BatchRecord> {
        let e = entry.filter(|e| e.aws_batch_queue.is_some())?;
        BatchRecord::load(registry, e.batch.as_deref()?)
    }

    pub fn load(registry: &Registry, batch: &str) -> Option<BatchRecord> {
        let text = std::fs::read_to_string(BatchRecord::path(registry, batch)).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub(super) fn save(&self, registry: &Registry) -> std::io::Result<()> {
        let path = BatchRecord::path(registry, &self.batch);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_vec_pretty(self).unwrap_or_default())
    }
}
