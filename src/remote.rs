//! Running a script on the instance through SSM: wait for its agent, send, and retry the
//! registration race that AWS reports as InvalidInstanceId.

use std::time::{Duration, Instant};

use crate::cloud::{Cloud, CloudError};

/// SendCommand can refuse a just-registered instance for a little while.
const SEND_RETRY_FOR: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("the SSM agent of {id} did not come online within {}. Check: the instance profile has AmazonSSMManagedInstanceCore; the subnet reaches the ssm, ssmmessages and ec2messages endpoints (internet route or VPC endpoints); the AMI runs the SSM agent; --region is the instance's region", humantime::format_duration(*waited))]
    AgentNeverOnline { id: String, waited: Duration },
    #[error("{0}")]
    Cloud(#[from] CloudError),
}

/// Wait until the agent reports Online, polling with backoff.
pub async fn wait_for_agent(
    cloud: &Cloud,
    id: &str,
    limit: Duration,
) -> Result<Duration, RemoteError> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        if cloud.agent_online(id).await? {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= limit {
            return Err(RemoteError::AgentNeverOnline {
                id: id.to_string(),
                waited: start.elapsed(),
            });
        }
        tokio::time::sleep(delay.min(limit.saturating_sub(start.elapsed()))).await;
        delay = (delay * 2).min(crate::instance::POLL_CAP);
    }
}

/// Send a script, retrying while SSM still calls the instance invalid.
pub async fn send(
    cloud: &Cloud,
    id: &str,
    script: &str,
    execution: Duration,
    comment: &str,
) -> Result<String, RemoteError> {
    let start = Instant::now();
    loop {
        match cloud
            .send_script(id, script, execution.as_secs(), comment)
            .await
        {
            Ok(cmd) => return Ok(cmd),
            Err(e) if e.is("InvalidInstanceId") && start.elapsed() < SEND_RETRY_FOR => {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
