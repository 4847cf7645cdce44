//! One instance's life: launch, wait for `running`, terminate and confirm. An [`Instance`]
//! owns its id until termination is confirmed; if it is dropped before that, it says so loudly
//! with the command that cleans up, so no path forgets an instance silently.

use std::time::{Duration, Instant};

use crate::cloud::{Cloud, CloudError, InstanceState, Lifecycle};
use crate::patience::Patience;

/// How long we try to confirm termination before giving up and telling the user.
const TERMINATE_CONFIRM: Duration = Duration::from_secs(5 * 60);
/// Longest pause between two state checks: a boot takes tens of seconds on AWS, and each
/// check is one cheap Describe call, so being at most this late is worth it.
pub const POLL_CAP: Duration = Duration::from_secs(2);
/// DescribeInstances may not know a new instance for a moment; past this, "not found" is real.
const NOT_FOUND_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("instance {id} ended while starting ({state}{}); check the AMI boots with this instance type", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    EndedWhileStarting {
        id: String,
        state: String,
        reason: Option<String>,
    },
    #[error("instance {id} was not running after {}; EC2 still reports it {state}", humantime::format_duration(*waited))]
    NotRunning {
        id: String,
        state: String,
        waited: Duration,
    },
    #[error("instance {id}: {source}")]
    Cloud { id: String, source: CloudError },
    #[error("could not confirm that instance {id} is terminated ({why}); it may still be running and billing: run `aws ec2 terminate-instances --instance-ids {id}` and check the console")]
    TerminateUnconfirmed { id: String, why: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Live,
    Terminated,
    Kept,
    /// Termination could not be confirmed and the error says so.
    Reported,
}

pub struct Instance {
    pub id: String,
    cloud: Cloud,
    fate: Fate,
}

impl Instance {
    /// Take charge of a launched instance.
    pub fn adopt(cloud: &Cloud, id: String) -> Instance {
        Instance {
            id,
            cloud: cloud.clone(),
            fate: Fate::Live,
        }
    }

    pub async fn state(&self) -> Result<Option<InstanceState>, InstanceError> {
        self.cloud
            .instance_state(&self.id)
            .await
            .map_err(|source| InstanceError::Cloud {
                id: self.id.clone(),
                source,
            })
    }

    /// Wait until EC2 reports `running`. Transient failures (throttling, no answer) are
    /// retried within `patience`.
    pub async fn wait_running(
        &self,
        limit: Duration,
        patience: &Patience,
    ) -> Result<(), InstanceError> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(200);
        loop {
            let state = match patience
                .call("EC2 DescribeInstances", self.cloud.instance_state(&self.id))
                .await
            {
                Ok(s) => s,
                Err(e) if e.is_transient() => {
                    if patience.exhausted() {
                        return Err(InstanceError::Cloud {
                            id: self.id.clone(),
                            source: e,
                        });
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(POLL_CAP);
                    continue;
                }
                Err(source) => {
                    return Err(InstanceError::Cloud {
                        id: self.id.clone(),
                        source,
                    })
                }
            };
            match state {
                Some(s) if s.name == Lifecycle::Running => return Ok(()),
                Some(s)
                    if s.is_gone()
                        || matches!(s.name, Lifecycle::Stopped | Lifecycle::Stopping) =>
                {
                    return Err(InstanceError::EndedWhileStarting {
                        id: self.id.clone(),
                        state: s.name.to_string(),
                        reason: s.reason,
                    })
                }
                None if start.elapsed() > NOT_FOUND_GRACE => {
                    return Err(InstanceError::NotRunning {
                        id: self.id.clone(),
                        state: "unknown (not found)".into(),
                        waited: start.elapsed(),
                    })
                }
                s if start.elapsed() > limit => {
                    return Err(InstanceError::NotRunning {
                        id: self.id.clone(),
                        state: s.map_or_else(|| "unknown".into(), |s| s.name.to_string()),
                        waited: start.elapsed(),
                    })
                }
                _ => {}
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(POLL_CAP);
        }
    }

    /// Leave the instance running on purpose (`--keep`).
    pub fn keep(mut self) -> String {
        self.fate = Fate::Kept;
        self.id.clone()
    }

    /// Stop tracking after a termination request whose outcome the caller reports itself.
    pub fn abandon(mut self) {
        self.fate = Fate::Reported;
    }

    /// Ask EC2 to terminate without waiting for the end (the second Ctrl-C): a few quick
    /// tries of the request, then one look. Ok(true) when EC2 has accepted the termination
    /// (shutting-down or terminated); Ok(false) when the request went out but the end is not
    /// seen yet; Err when the request could not be made.
    pub async fn request_termination(&self, patience: &Patience) -> Result<bool, CloudError> {
        let mut last = None;
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
            match patience
                .call("EC2 TerminateInstances", self.cloud.terminate(&self.id))
                .await
            {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) if e.is("InvalidInstanceID.NotFound") => return Ok(true),
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            return Err(e);
        }
        Ok(matches!(
            patience
                .call("EC2 DescribeInstances", self.cloud.instance_state(&self.id))
                .await,
            Ok(Some(s)) if s.is_gone()
        ))
    }

    /// Terminate and wait until EC2 reports `terminated`, retrying the request until it takes,
    /// for at most [`TERMINATE_CONFIRM`]; a run of failed calls ends sooner, at the patience of
    /// a client on its own (`cleanup`, a batch's idle instance).
    pub async fn terminate(self) -> Result<Duration, InstanceError> {
        self.terminate_within(&Patience::new(TERMINATE_CONFIRM))
            .await
    }

    /// [`Instance::terminate`] within the job's patience: a run of calls that get no answer
    /// ends the wait when the budget the job's earlier calls may have spent runs out.
    pub async fn terminate_within(
        mut self,
        patience: &Patience,
    ) -> Result<Duration, InstanceError> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(250);
        let mut last_problem = String::from("no answer yet");
        let mut requested = false;
        while start.elapsed() < TERMINATE_CONFIRM && !patience.exhausted() {
            if !requested {
                match patience
                    .call("EC2 TerminateInstances", self.cloud.terminate(&self.id))
                    .await
                {
                    Ok(()) => requested = true,
                    Err(e)
                        if e.is("InvalidInstanceID.NotFound")
                            && start.elapsed() < NOT_FOUND_GRACE =>
                    {
                        last_problem = e.to_string();
                    }
                    Err(e) => last_problem = e.to_string(),
                }
            }
            if requested {
                match patience
                    .call("EC2 DescribeInstances", self.cloud.instance_state(&self.id))
                    .await
                {
                    Ok(Some(s)) if s.name == Lifecycle::Terminated => {
                        self.fate = Fate::Terminated;
                        return Ok(start.elapsed());
                    }
                    // Gone from the listing after being asked to terminate: terminated.
                    Ok(None) if start.elapsed() > Duration::from_secs(2) => {
                        self.fate = Fate::Terminated;
                        return Ok(start.elapsed());
                    }
                    Ok(Some(s)) => {
                        last_problem = format!("still {}", s.name);
                        // Something started it again, or the request was lost: ask again.
                        if !s.is_gone() && s.name != Lifecycle::Stopping {
                            requested = false;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => last_problem = e.to_string(),
                }
            }
            // While AWS is failing, no pause outlasts what is left of the budget.
            let _ = patience.bounded(tokio::time::sleep(delay)).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        if patience.exhausted() {
            last_problem = format!(
                "AWS has not answered for {}: {}",
                humantime::format_duration(patience.limit()),
                patience.last_error()
            );
        }
        self.fate = Fate::Reported;
        Err(InstanceError::TerminateUnconfirmed {
            id: self.id.clone(),
            why: last_problem,
        })
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if self.fate == Fate::Live {
            crate::ui::stderr_line(&format!(
                "run-render: instance {id} was not confirmed terminated and may still be running; \
                 its deadline will stop it, or run `aws ec2 terminate-instances --instance-ids {id}`",
                id = self.id
            ));
        }
    }
}
