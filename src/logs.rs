//! Following the job's log: the runner writes numbered chunks under the job's records folder
//! (000001.log, 000002.log... without gaps, at most one per RTB_LOG_EVERY). The client GETs
//! the next chunk's key until it is not there yet: a poll with nothing new is one GET, a
//! twelfth of a LIST's price. (A single run used to LIST what was new: with chunks written at
//! the pace the client reads, GETs show a line as soon, p50 0.19 s against 0.21 s on
//! bench/client.sh, for a twelfth of the price.)

use std::time::SystemTime;

use rtb_model::{JobRecords, JobResult};

use crate::cloud::{Cloud, CloudError};
use crate::ui::Ui;

pub struct Tail {
    records: JobRecords,
    /// The sequence number of the next chunk to read.
    next: u64,
    pub lines: u64,
    pub chunks: u64,
}

impl Tail {
    pub fn new(records: JobRecords) -> Tail {
        Tail {
            records,
            next: 1,
            lines: 0,
            chunks: 0,
        }
    }

    pub fn records(&self) -> &JobRecords {
        &self.records
    }

    /// Print every line written since the last call; returns how many.
    pub async fn poll(&mut self, cloud: &Cloud, ui: &Ui) -> Result<u64, CloudError> {
        let mut printed = 0;
        loop {
            let key = self.records.chunk_key(self.next);
            let Some(bytes) = cloud.log_chunk(self.records.bucket(), &key).await? else {
                break;
            };
            let stamp = clock(SystemTime::now());
            for line in String::from_utf8_lossy(&bytes).lines() {
                ui.log_line(&format!("{stamp} │ {line}"));
                printed += 1;
            }
            self.chunks += 1;
            self.next += 1;
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
