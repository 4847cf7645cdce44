//! Following the job's log: the runner writes numbered chunks under the job's records folder
//! about once a second; we list what is new after the last chunk seen, and print its lines.

use std::time::SystemTime;

use rtb_model::{JobRecords, JobResult};

use crate::cloud::{Cloud, CloudError};
use crate::ui::Ui;

pub struct Tail {
    records: JobRecords,
    last_key: Option<String>,
    pub lines: u64,
    pub chunks: u64,
}

impl Tail {
    pub fn new(records: JobRecords) -> Tail {
        Tail {
            records,
            last_key: None,
            lines: 0,
            chunks: 0,
        }
    }

    pub fn records(&self) -> &JobRecords {
        &self.records
    }

    /// Print every line written since the last call; returns how many.
    pub async fn poll(&mut self, cloud: &Cloud, ui: &Ui) -> Result<u64, CloudError> {
        let keys = cloud
            .keys_after(
                self.records.bucket(),
                &self.records.log_prefix(),
                self.last_key.as_deref(),
            )
            .await?;
        let mut printed = 0;
        for key in keys {
            if self.records.chunk_seq(&key).is_none() {
                continue;
            }
            let Some(bytes) = cloud.get_bytes(self.records.bucket(), &key).await? else {
                continue;
            };
            let stamp = clock(SystemTime::now());
            for line in String::from_utf8_lossy(&bytes).lines() {
                ui.log_line(&format!("{stamp} │ {line}"));
                printed += 1;
            }
            self.chunks += 1;
            self.last_key = Some(key);
        }
        self.lines += printed;
        Ok(printed)
    }

    /// The runner's result record, once it has written it.
    pub async fn result(&self, cloud: &Cloud) -> Result<Option<JobResult>, CloudError> {
        cloud.job_result(&self.records).await
    }
}

/// `HH:MM:SS` (UTC), when a line was shown.
fn clock(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.get(11..19).unwrap_or_default().to_string()
}
