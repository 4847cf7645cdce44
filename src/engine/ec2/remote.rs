//! Running a script on the instance through SSM: wait for its agent, send, and retry the
//! registration race that AWS reports as InvalidInstanceId. Every script we send is safe to
//! deliver twice (a lost SendCommand answer makes the SDK send it again), so transient
//! failures are simply retried, within the caller's patience.

use std::time::{Duration, Instant};

use crate::cloud::{Cloud, CloudError};
use crate::patience::Patience;

/// SendCommand can refuse a just-registered instance for a little while.
const SEND_RETRY_FOR: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("the SSM agent of {id} did not come online within {}. Check: the instance profile has AmazonSSMManagedInstanceCore; the subnet reaches the ssm, ssmmessages and ec2messages endpoints (internet route or VPC endpoints); the AMI runs the SSM agent; --region is the instance's region", humantime::format_duration(*waited))]
    AgentNeverOnline { id: String, waited: Duration },
    /// AWS stopped answering for longer than the client's patience.
    #[error("AWS has not answered for {} ({last})", humantime::format_duration(*waited))]
    NoAnswer { waited: Duration, last: String },
    #[error("{0}")]
    Cloud(#[from] CloudError),
}

/// Wait until the agent reports Online, polling with backoff.
pub async fn wait_for_agent(
    cloud: &Cloud,
    id: &str,
    limit: Duration,
    patience: &Patience,
) -> Result<Duration, RemoteError> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        match patience
            .call("SSM DescribeInstanceInformation", cloud.agent_online(id))
            .await
        {
            Ok(true) => return Ok(start.elapsed()),
            Ok(false) => {}
            Err(e) if e.is_transient() => {
                if patience.exhausted() {
                    return Err(no_answer(patience));
                }
            }
            Err(e) => return Err(e.into()),
        }
        if start.elapsed() >= limit {
            return Err(RemoteError::AgentNeverOnline {
                id: id.to_string(),
                waited: start.elapsed(),
            });
        }
        tokio::time::sleep(delay.min(limit.saturating_sub(start.elapsed()))).await;
        delay = (delay * 2).min(super::instance::POLL_CAP);
    }
}

/// Send a script, retrying while SSM still calls the instance invalid and while AWS fails
/// transiently.
pub async fn send(
    cloud: &Cloud,
    id: &str,
    script: &str,
    execution: Duration,
    comment: &str,
    patience: &Patience,
) -> Result<String, RemoteError> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(500);
    loop {
        match patience
            .call(
                "SSM SendCommand",
                cloud.send_script(id, script, execution.as_secs(), comment),
            )
            .await
        {
            Ok(cmd) => return Ok(cmd),
            Err(e) if e.is("InvalidInstanceId") && start.elapsed() < SEND_RETRY_FOR => {}
            Err(e) if e.is_transient() => {
                if patience.exhausted() {
                    return Err(no_answer(patience));
                }
            }
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

pub fn no_answer(p: &Patience) -> RemoteError {
    RemoteError::NoAnswer {
        waited: p.limit(),
        last: p.last_error(),
    }
}

/// How long a short script (start a detached job, stop one) may take to end.
const SHORT_SCRIPT: Duration = Duration::from_secs(10 * 60);

/// Wait for a short command to end and return how it ended.
pub async fn wait_command(
    cloud: &Cloud,
    id: &str,
    command: &str,
    patience: &Patience,
) -> Result<crate::cloud::Invocation, RemoteError> {
    let start = Instant::now();
    loop {
        // It was just sent: no look before it can have ended.
        tokio::time::sleep(look_after(start.elapsed())).await;
        match patience
            .call("SSM GetCommandInvocation", cloud.invocation(command, id))
            .await
        {
            Ok(Some(inv)) if inv.status.is_done() => return Ok(inv),
            Ok(_) => {}
            Err(e) if e.is_transient() => {
                if patience.exhausted() {
                    return Err(no_answer(patience));
                }
            }
            Err(e) => return Err(e.into()),
        }
        if start.elapsed() > SHORT_SCRIPT {
            return Err(RemoteError::Cloud(CloudError::local(
                "SSM GetCommandInvocation",
                format!(
                    "the command did not end within {}",
                    humantime::format_duration(SHORT_SCRIPT)
                ),
            )));
        }
    }
}

/// The pause before the next look at a short command, `elapsed` after it was sent. Most end
/// within a second (a pool's check before each job takes 0.1-0.3 s on the emulator, and its
/// end is the next job's start, so a look every 0.1 s is worth the calls); a slower one is
/// looked at every second.
fn look_after(elapsed: Duration) -> Duration {
    if elapsed < Duration::from_secs(1) {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_command_is_looked_at_often_at_first_then_each_second() {
        let ms = Duration::from_millis;
        for (elapsed, want) in [
            (ms(0), ms(100)),
            (ms(300), ms(100)),
            (ms(999), ms(100)),
            (ms(1000), ms(1000)),
            (ms(60_000), ms(1000)),
        ] {
            assert_eq!(look_after(elapsed), want, "{elapsed:?}");
        }
    }
}
