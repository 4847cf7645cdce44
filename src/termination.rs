//! The termination policy, in one place: how every path that launched an instance leaves
//! it. Terminated and confirmed by default; kept only when asked (`--keep`); left to end
//! itself when detached or when AWS stopped answering (its own deadline, armed on the
//! instance, ends it); and a hurried request on a second Ctrl-C. Whenever the instance's
//! end is not confirmed, the exit code says so (69).
//!
//! A batch's instance is shared by its jobs: one job's end never ends it under another
//! ([`handback`] only says what that end tells of the instance; the pool ends it once no job
//! runs there, `batch/host.rs`).

use std::time::{Instant, SystemTime};

use crate::cloud::Cloud;
use crate::engine::ec2::instance::Instance;
use crate::engine::ec2::script;
use crate::patience::Patience;
use crate::report::{exit, InstanceFate, Outcome, Report};
use crate::signals::Interrupts;
use crate::ui::Ui;

/// How the client leaves the instance once the job part is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// Terminate and confirm (or keep, with --keep).
    Normally,
    /// A second signal: request termination and exit at once.
    Now,
    /// AWS stopped answering: nothing more can be done from here. The job goes on, and the
    /// instance ends itself after it (or at its deadline).
    Unreachable,
    /// `--detach`: the job runs on, and the instance ends itself after it.
    Detached,
}

/// What a batch job's end tells of the shared instance it ran on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handback {
    /// The job came to its own end, or was stopped: the instance may take another job, once
    /// the pool has checked it as a fresh one (running, deadline, disk).
    Reusable,
    /// It takes no new job (why); it ends once its other jobs have.
    Retire(&'static str),
    /// It went away under the job.
    Gone,
    /// A second signal: end it at once, whoever runs there.
    Now,
    /// AWS stopped answering: it is left to its own deadline.
    Unreachable,
}

/// What a batch job's end (how the client left it, and its outcome) tells of its instance.
pub fn handback(leave: Leave, outcome: Outcome) -> Handback {
    match leave {
        Leave::Now => Handback::Now,
        Leave::Unreachable => Handback::Unreachable,
        Leave::Detached => Handback::Retire("a detached job runs on it"),
        Leave::Normally => match outcome {
            Outcome::Succeeded | Outcome::JobFailed | Outcome::TimedOut | Outcome::Interrupted => {
                Handback::Reusable
            }
            Outcome::InstanceLost => Handback::Gone,
            Outcome::AgentNeverOnline => Handback::Retire("its SSM agent is not online"),
            Outcome::RemoteFailed => {
                Handback::Retire("a job could not be started or followed there")
            }
            Outcome::Unknown
            | Outcome::LaunchFailed
            | Outcome::PreflightFailed
            | Outcome::Detached => Handback::Retire("a job there ended without a clear end"),
        },
    }
}

/// What the policy needs to know of the job whose instance it ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct Terms {
    /// `--keep`: leave the instance running after the job.
    pub keep: bool,
    /// The instance's own deadline, which ends it when nobody else does.
    pub deadline: Option<SystemTime>,
}

/// The end of every path that launched something: the termination policy. `patience` is the
/// job's own budget: a termination that gets no answer does not start a wait of its own.
#[allow(clippy::too_many_arguments)]
pub async fn end(
    job: Terms,
    cloud: &Cloud,
    ui: &Ui,
    interrupts: &Interrupts,
    instance: Instance,
    leave: Leave,
    patience: &Patience,
    r: &mut Report,
) {
    let id = instance.id.clone();
    match leave {
        Leave::Unreachable => {
            instance.abandon();
            r.instance = InstanceFate::Unconfirmed;
            r.exit_code = exit::UNCONFIRMED;
            r.push_error(left_running(job, &id));
        }
        Leave::Now => {
            ui.note(format!("terminating {id} without waiting"));
            hurried_termination(instance, patience, r).await;
        }
        Leave::Detached => {
            instance.abandon();
            r.instance = InstanceFate::Detached;
        }
        Leave::Normally if job.keep && r.outcome != Outcome::Interrupted => {
            instance.keep();
            r.instance = InstanceFate::Kept;
            ui.note(format!("keeping {id} running, as asked (--keep)"));
        }
        Leave::Normally => {
            ui.phase(format!("terminating {id}"));
            let t = Instant::now();
            let seen = interrupts.count();
            let confirmed = tokio::select! {
                done = instance.terminate_within(patience) => Some(done),
                _ = interrupts.reached(seen + 1) => None,
            };
            match confirmed {
                Some(Ok(_)) => {
                    r.instance = InstanceFate::Terminated;
                    r.phases.terminate_s = Some(t.elapsed().as_secs_f64());
                    ui.done(format!("{id} terminated"));
                }
                Some(Err(e)) => {
                    r.instance = InstanceFate::Unconfirmed;
                    r.exit_code = exit::UNCONFIRMED;
                    if patience.exhausted() {
                        // AWS stopped answering: say when the instance ends by itself.
                        r.push_error(format!(
                            "AWS has not answered for {} ({}); {}",
                            humantime::format_duration(patience.limit()),
                            patience.last_error(),
                            left_running(job, &id)
                        ));
                    } else {
                        r.push_error(e.to_string());
                    }
                }
                None => {
                    // Asked again while waiting: make sure the request is out, then go.
                    hurried_termination(Instance::adopt(cloud, id), patience, r).await;
                }
            }
        }
    }
}

/// Request termination, look once, and leave: exit 69 unless EC2 has accepted it.
pub async fn hurried_termination(instance: Instance, patience: &Patience, r: &mut Report) {
    let id = instance.id.clone();
    let requested = instance.request_termination(patience).await;
    instance.abandon();
    match requested {
        Ok(true) => {
            r.instance = InstanceFate::Terminated;
            r.push_error(format!("{id} is terminating (not waiting for it)"));
        }
        Ok(false) => {
            r.instance = InstanceFate::Unconfirmed;
            r.exit_code = exit::UNCONFIRMED;
            r.push_error(format!(
                "termination of {id} requested; not waiting for it, so it is not confirmed"
            ));
        }
        Err(e) => {
            r.instance = InstanceFate::Unconfirmed;
            r.exit_code = exit::UNCONFIRMED;
            r.push_error(format!("could not request termination of {id}: {e}"));
        }
    }
}

/// What happens to an instance the client can no longer reach.
fn left_running(job: Terms, id: &str) -> String {
    let deadline = match job.deadline {
        Some(d) => format!(
            "at the latest at its deadline, {}",
            humantime::format_rfc3339_seconds(d)
        ),
        None => "at the latest at the AMI's maximum lifetime (no --timeout)".to_string(),
    };
    let after = if job.keep {
        String::new()
    } else {
        format!(
            "it powers itself off within {} of the job's end, ",
            humantime::format_duration(script::AFTER_JOB)
        )
    };
    format!(
        "instance {id} may still be running the job: {after}{deadline}. Check it with \
         `aws ec2 describe-instances --instance-ids {id}`, end it with \
         `aws ec2 terminate-instances --instance-ids {id}`"
    )
}

#[cfg(test)]
mod tests {
    //! The policy over the SDK's replay client: every AWS call it makes is recorded, so an
    //! empty replay proves that a path makes none.
    use super::*;
    use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
    use aws_smithy_types::body::SdkBody;

    fn cloud(replay: &StaticReplayClient) -> Cloud {
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(
                    aws_credential_types::Credentials::new("AKID", "SECRET", None, None, "test"),
                ),
            )
            .http_client(replay.clone())
            .build();
        Cloud::from_config(config)
    }

    fn job(keep: bool) -> Terms {
        Terms {
            keep,
            deadline: None,
        }
    }

    fn report() -> Report {
        Report {
            job_id: "j1".into(),
            outcome: Outcome::Succeeded,
            exit_code: 0,
            instance_id: Some("i-0123456789abcdef0".into()),
            instance: InstanceFate::NotLaunched,
            ami: String::new(),
            instance_type: String::new(),
            region: None,
            output: None,
            records: None,
            phases: Default::default(),
            log_lines: 0,
            result: None,
            error: None,
            kept: false,
        }
    }

    fn ec2(body: &str) -> ReplayEvent {
        ReplayEvent::new(
            http::Request::builder()
                .uri("https://ec2.us-east-1.amazonaws.com/")
                .body(SdkBody::empty())
                .unwrap(),
            http::Response::builder()
                .status(200)
                .body(SdkBody::from(body.to_string()))
                .unwrap(),
        )
    }

    async fn end_with(replay: &StaticReplayClient, keep: bool, leave: Leave) -> Report {
        let cloud = cloud(replay);
        let mut r = report();
        let instance = Instance::adopt(&cloud, "i-0123456789abcdef0".into());
        end(
            job(keep),
            &cloud,
            &Ui::plain(),
            &Interrupts::listen(),
            instance,
            leave,
            &Patience::new(std::time::Duration::from_secs(5)),
            &mut r,
        )
        .await;
        r
    }

    /// A batch job's end and its shared instance: only the job's own end hands it on; no end
    /// but a second signal ends it (the pool does, once no job runs there).
    #[test]
    fn what_a_batch_job_end_tells_of_its_instance() {
        use Handback::*;
        let table: &[(Leave, Outcome, Handback)] = &[
            (Leave::Normally, Outcome::Succeeded, Reusable),
            (Leave::Normally, Outcome::JobFailed, Reusable),
            (Leave::Normally, Outcome::TimedOut, Reusable),
            // Stopped (Ctrl-C, `stop JOB`): the instance is fine; the batch decides.
            (Leave::Normally, Outcome::Interrupted, Reusable),
            (Leave::Normally, Outcome::InstanceLost, Gone),
            (
                Leave::Normally,
                Outcome::RemoteFailed,
                Retire("a job could not be started or followed there"),
            ),
            (
                Leave::Normally,
                Outcome::AgentNeverOnline,
                Retire("its SSM agent is not online"),
            ),
            (Leave::Now, Outcome::Interrupted, Now),
            (Leave::Unreachable, Outcome::Unknown, Unreachable),
        ];
        for (leave, outcome, want) in table {
            assert_eq!(&handback(*leave, *outcome), want, "{leave:?} {outcome:?}");
        }
    }

    #[tokio::test]
    async fn keep_detach_and_unreachable_make_no_aws_call() {
        for (keep, leave, fate) in [
            (true, Leave::Normally, InstanceFate::Kept),
            (false, Leave::Detached, InstanceFate::Detached),
            (false, Leave::Unreachable, InstanceFate::Unconfirmed),
        ] {
            let replay = StaticReplayClient::new(vec![]);
            let r = end_with(&replay, keep, leave).await;
            assert_eq!(r.instance, fate, "{leave:?}");
            assert_eq!(replay.actual_requests().count(), 0, "{leave:?} called AWS");
        }
    }

    #[tokio::test]
    async fn the_default_terminates_and_confirms() {
        let replay = StaticReplayClient::new(vec![
            ec2("<TerminateInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId><instancesSet><item><instanceId>i-0123456789abcdef0</instanceId><currentState><code>32</code><name>shutting-down</name></currentState></item></instancesSet></TerminateInstancesResponse>"),
            ec2("<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r</requestId><reservationSet><item><reservationId>r-1</reservationId><instancesSet><item><instanceId>i-0123456789abcdef0</instanceId><instanceState><code>48</code><name>terminated</name></instanceState></item></instancesSet></item></reservationSet></DescribeInstancesResponse>"),
        ]);
        let r = end_with(&replay, false, Leave::Normally).await;
        assert_eq!(r.instance, InstanceFate::Terminated, "{:?}", r.error);
        assert_eq!(r.exit_code, 0);
        let bodies: Vec<String> = replay
            .actual_requests()
            .map(|q| String::from_utf8_lossy(q.body().bytes().unwrap_or_default()).into_owned())
            .collect();
        assert_eq!(bodies.len(), 2);
        assert!(
            bodies[0].contains("Action=TerminateInstances"),
            "{}",
            bodies[0]
        );
        assert!(
            bodies[1].contains("Action=DescribeInstances"),
            "{}",
            bodies[1]
        );
    }
}
