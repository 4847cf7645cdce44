//! The two-minute warning. AWS tells a spot instance it is about to be reclaimed through its
//! instance metadata (IMDSv2 `spot/instance-action`, two minutes ahead), and may recommend
//! moving off it earlier (`events/recommendations/rebalance`). The runner polls both; on a
//! notice it says so in the log ("spot reclaim notice at ..."), records an interruption in the
//! attempt's records (so a retry is known as a reclaim, not a failure) and asks for a
//! checkpoint at once. The command keeps running: the notice is not a stop.
//!
//! The container runs with host networking, so IMDS is where it is for the instance: at
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT` when set, else 169.254.169.254.

use std::time::{Duration, SystemTime};

use aws_config::imds::client::error::ImdsError;
use rtb_model::checkpoint::{Interrupted, CHECKPOINT_SCHEMA, REBALANCE, SPOT_INTERRUPTION};
use rtb_model::JobRecords;
use tokio::sync::watch;

use crate::logsink::Log;

/// AWS's advice for the interruption notice: check every 5 seconds. Two cheap local GETs.
const POLL_EVERY: Duration = Duration::from_secs(5);
/// Polls that may fail before the watcher decides there is no IMDS to watch (the runner is
/// not on EC2, or IMDS is turned off on the instance), when none ever succeeded.
const GIVE_UP_AFTER: u32 = 3;

const INSTANCE_ACTION: &str = "/latest/meta-data/spot/instance-action";
const REBALANCE_PATH: &str = "/latest/meta-data/events/recommendations/rebalance";

/// What the watcher needs to record a notice.
pub struct Watcher {
    pub log: Log,
    pub s3: aws_sdk_s3::Client,
    pub records: Option<JobRecords>,
    pub job_id: String,
    pub attempt: u32,
    /// Whether a notice starts a checkpoint (said in the log line).
    pub checkpoints: bool,
}

/// `(action, time)` of an `instance-action` answer: `{"action": "terminate", "time":
/// "2026-12-01T10:02:00Z"}`.
pub fn parse_instance_action(body: &str) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let action = v.get("action")?.as_str()?.to_string();
    let time = v.get("time")?.as_str()?.to_string();
    Some((action, time))
}

/// The time of a rebalance recommendation: `{"noticeTime": "2026-12-01T10:00:00Z"}`.
pub fn parse_rebalance(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    Some(v.get("noticeTime")?.as_str()?.to_string())
}

/// What one metadata path answered.
enum Answer {
    Notice(String),
    /// 404: no notice (what IMDS answers until there is one).
    None,
    Failed(String),
}

async fn ask(client: &aws_config::imds::Client, path: &str) -> Answer {
    match client.get(path).await {
        Ok(body) => Answer::Notice(body.as_ref().to_string()),
        Err(ImdsError::ErrorResponse(r)) if r.response().status().as_u16() == 404 => Answer::None,
        Err(e) => Answer::Failed(rtb_model::errors::chain(&e)),
    }
}

impl Watcher {
    /// Start watching; the receiver holds the newest notice (None until one comes). Returns
    /// None, after one line saying why, when the environment turns IMDS off.
    pub fn spawn(self) -> Option<watch::Receiver<Option<Interrupted>>> {
        if std::env::var("AWS_EC2_METADATA_DISABLED")
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
        {
            self.log.info(
                "AWS_EC2_METADATA_DISABLED is set: not watching for spot interruption notices",
            );
            return None;
        }
        let client = aws_config::imds::Client::builder().build();
        let (tx, rx) = watch::channel(None);
        tokio::spawn(self.watch(client, tx));
        Some(rx)
    }

    async fn watch(self, client: aws_config::imds::Client, tx: watch::Sender<Option<Interrupted>>) {
        let (mut reclaim, mut rebalance) = (false, false);
        let (mut answered, mut failed) = (false, 0u32);
        let mut failing = false;
        loop {
            for (path, is_reclaim) in [(INSTANCE_ACTION, true), (REBALANCE_PATH, false)] {
                if (is_reclaim && reclaim) || (!is_reclaim && rebalance) {
                    continue;
                }
                match ask(&client, path).await {
                    Answer::None => (answered, failed, failing) = (true, 0, false),
                    Answer::Notice(body) => {
                        (answered, failed, failing) = (true, 0, false);
                        let notice = if is_reclaim {
                            parse_instance_action(&body)
                                .map(|(action, time)| (SPOT_INTERRUPTION, Some(action), time))
                        } else {
                            parse_rebalance(&body).map(|time| (REBALANCE, None, time))
                        };
                        let Some((kind, action, time)) = notice else {
                            self.log.info(format!(
                                "instance metadata {path} answered something unreadable: {}",
                                body.chars().take(200).collect::<String>()
                            ));
                            continue;
                        };
                        if is_reclaim {
                            reclaim = true;
                        } else {
                            rebalance = true;
                        }
                        self.noticed(&tx, kind, action, time).await;
                    }
                    Answer::Failed(why) => {
                        failed += 1;
                        if !answered && failed >= GIVE_UP_AFTER {
                            self.log.info(format!(
                                "cannot read the instance metadata ({why}): not watching for spot interruption notices"
                            ));
                            return;
                        }
                        if answered && !failing {
                            self.log.info(format!(
                                "reading the instance metadata failed ({why}); still watching"
                            ));
                            failing = true;
                        }
                    }
                }
            }
            // After the interruption notice there is nothing more to learn: the instance goes.
            if reclaim {
                return;
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Log the notice, hand it to the checkpoints, and (for an interruption) record it.
    async fn noticed(
        &self,
        tx: &watch::Sender<Option<Interrupted>>,
        kind: &str,
        action: Option<String>,
        time: String,
    ) {
        let seen_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let then = if self.checkpoints {
            "checkpointing now; the command keeps running"
        } else {
            "no checkpoints (no OUTPUT_BUCKET): what the command saves itself is all that survives"
        };
        let line = match (kind, &action) {
            (SPOT_INTERRUPTION, Some(a)) => format!(
                "spot reclaim notice at {seen_at}: AWS will {a} this instance at {time}; {then}"
            ),
            _ => format!(
                "spot rebalance recommendation at {seen_at} (AWS: {time}): this instance is at elevated risk of interruption; {then}"
            ),
        };
        self.log.info(line);
        let record = Interrupted {
            schema: CHECKPOINT_SCHEMA,
            job_id: self.job_id.clone(),
            attempt: self.attempt,
            notice: kind.to_string(),
            action,
            time,
            seen_at,
        };
        // A rebalance recommendation must not hide an interruption seen before it.
        tx.send_if_modified(|held| {
            if held.as_ref().is_some_and(Interrupted::is_interruption) {
                return false;
            }
            *held = Some(record.clone());
            true
        });
        if !record.is_interruption() {
            return;
        }
        if let Some(records) = &self.records {
            let key = records.interrupted_key();
            let body = record.to_json().into_bytes();
            if let Err(e) = crate::record::put_json(&self.s3, records.bucket(), &key, body).await {
                self.log.info(format!(
                    "cannot write the interruption record s3://{}/{key}: {e}",
                    records.bucket()
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_parse_as_aws_documents_them() {
        assert_eq!(
            parse_instance_action(r#"{"action": "terminate", "time": "2017-09-18T08:22:00Z"}"#),
            Some(("terminate".into(), "2017-09-18T08:22:00Z".into()))
        );
        assert_eq!(
            parse_instance_action(r#"{"action":"stop","time":"2026-12-01T10:02:00Z"}"#),
            Some(("stop".into(), "2026-12-01T10:02:00Z".into()))
        );
        for bad in [
            "",
            "none",
            "{}",
            r#"{"action": "terminate"}"#,
            r#"{"time": 3}"#,
        ] {
            assert_eq!(parse_instance_action(bad), None, "{bad}");
        }
        assert_eq!(
            parse_rebalance(r#"{"noticeTime": "2020-10-27T08:22:00Z"}"#),
            Some("2020-10-27T08:22:00Z".into())
        );
        assert_eq!(parse_rebalance(r#"{"time": "x"}"#), None);
    }
}
