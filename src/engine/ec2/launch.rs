//! Launching one instance so that a lost answer never leaves one running unseen. EC2's
//! RunInstances is idempotent by ClientToken: the same token asks for the same instance. When a
//! call gets no usable answer (a dropped connection, a timeout, a 5xx), the instance may exist:
//! look it up by its token tag first (adopting it when found), and only then ask again with the
//! same token, for a bounded time.

use std::time::{Duration, Instant};

use crate::cloud::{Cloud, CloudError, LaunchError};
use crate::plan::Launch;

/// How long one instance type's launch may keep failing transiently before we give up.
const PROVISION_LIMIT: Duration = Duration::from_secs(3 * 60);
/// After an unanswered launch, how long to look for the instance before asking again:
/// DescribeInstances may lag a new instance by about a second.
const LOOKUP_FOR: Duration = Duration::from_secs(4);

/// A launched instance, and how we learned its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    pub id: String,
    /// Found by its launch token after an answer was lost (not from RunInstances' answer).
    pub found_by_token: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchFailure {
    /// EC2 refused the launch: nothing is running.
    #[error("{0}")]
    Refused(LaunchError),
    /// No answer could be had: an instance may exist. Its deadline still ends it.
    #[error("could not tell whether the launch happened ({last}); if an instance tagged {tag}={token} exists it is ours: `run-render cleanup` ends it, and so does its own deadline", tag = crate::cloud::LAUNCH_TOKEN_TAG)]
    Unconfirmed { token: String, last: CloudError },
}

/// Launch `launch.instance_types[variant]`, recovering from lost answers.
pub async fn launch(
    cloud: &Cloud,
    launch: &Launch,
    variant: usize,
    user_data: Option<&str>,
    root_device: Option<&str>,
    note: &(dyn Fn(String) + Sync),
) -> Result<Launched, LaunchFailure> {
    let token = launch.token(variant);
    let start = Instant::now();
    let mut delay = Duration::from_millis(500);
    loop {
        let e = match cloud
            .run_instance(launch, variant, user_data, root_device)
            .await
        {
            Ok(id) => {
                return Ok(Launched {
                    id,
                    found_by_token: false,
                })
            }
            Err(LaunchError::Other(e)) if e.is_transient() => e,
            Err(e) => return Err(LaunchFailure::Refused(e)),
        };
        if e.may_have_run() {
            note(format!(
                "no answer to the launch ({}); looking for the instance by its launch token",
                e.message
            ));
            if let Some(id) = find(cloud, &token).await {
                return Ok(Launched {
                    id,
                    found_by_token: true,
                });
            }
        }
        if start.elapsed() + delay > PROVISION_LIMIT {
            // One last look: the last attempt may have launched it.
            if let Some(id) = find(cloud, &token).await {
                return Ok(Launched {
                    id,
                    found_by_token: true,
                });
            }
            return Err(LaunchFailure::Unconfirmed { token, last: e });
        }
        note(format!(
            "launch not confirmed ({}); asking again with the same launch token in {:.0?}",
            e.message, delay
        ));
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(15));
    }
}

/// The live instance launched with `token`, looked for over [`LOOKUP_FOR`].
async fn find(cloud: &Cloud, token: &str) -> Option<String> {
    let start = Instant::now();
    loop {
        if let Ok(found) = cloud.instances_with_token(token).await {
            // A terminated one is not ours to adopt (and EC2 would refuse its token again).
            if let Some((id, _)) = found.into_iter().find(|(_, s)| !s.is_gone()) {
                return Some(id);
            }
        }
        if start.elapsed() >= LOOKUP_FOR {
            return None;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
