//! Whether a failed attempt is tried again, and how: a pure decision over the attempt's
//! outcome. The instance being the problem (lost, agent never online, no capacity, the
//! container never started) is retried on a fresh instance; the job's own failure (a MATLAB
//! error) only when the batch says `retry-on-job-error = true`.
//!
//! A spot reclaim (the instance was lost and the runner recorded the interruption notice) is
//! no failure: it does not use up `retries`. It is retried on spot up to `spot-retries` times,
//! then on demand when `spot-fallback` allows. A retry after a lost instance resumes from the
//! newest checkpoint ([`resume_from`]).

use crate::report::Outcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempted {
    pub outcome: Outcome,
    /// The launch or the instance ran out of capacity (an EC2 capacity error).
    pub capacity: bool,
    /// The attempt ran on a spot instance.
    pub spot: bool,
    /// The attempt's records hold a spot interruption record (the runner saw the notice).
    pub reclaimed: bool,
    /// Attempts made so far, this one included.
    pub attempts: u32,
    /// Of those, the spot reclaims (this one included when it was one).
    pub reclaims: u32,
    /// The user asked the batch to stop.
    pub stopping: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub retries: u32,
    pub retry_on_job_error: bool,
    pub spot_fallback: bool,
    pub spot_retries: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The job's end: its last attempt stands.
    Final,
    /// Try again; `spot` says whether the next attempt asks for spot.
    Retry { why: &'static str, spot: bool },
}

/// Why an outcome is worth another attempt, if it is.
fn retryable(a: &Attempted, rules: &Rules) -> Option<&'static str> {
    match a.outcome {
        Outcome::InstanceLost if a.spot => Some("the spot instance was reclaimed or lost mid-job"),
        Outcome::InstanceLost => Some("the instance was lost mid-job"),
        Outcome::AgentNeverOnline => Some("the instance's SSM agent never came online"),
        Outcome::LaunchFailed if a.capacity => Some("EC2 had no capacity"),
        Outcome::RemoteFailed => Some("the job's container could not be started"),
        Outcome::JobFailed if rules.retry_on_job_error => {
            Some("the job failed (retry-on-job-error)")
        }
        _ => None,
    }
}

pub fn decide(a: &Attempted, rules: &Rules) -> Next {
    if a.stopping {
        return Next::Final;
    }
    if a.outcome == Outcome::InstanceLost && a.spot && a.reclaimed {
        return reclaimed(a, rules);
    }
    // Reclaims are not failures: only the other attempts count against `retries`.
    if a.attempts.saturating_sub(a.reclaims) > rules.retries {
        return Next::Final;
    }
    match retryable(a, rules) {
        None => Next::Final,
        Some(why) => {
            // Spot trouble (lost without a notice, no spot capacity) falls back to on-demand.
            let spot_trouble = a.spot && (a.outcome == Outcome::InstanceLost || a.capacity);
            Next::Retry {
                why,
                spot: a.spot && !(spot_trouble && rules.spot_fallback),
            }
        }
    }
}

/// A spot reclaim: again on spot while reclaims stay within `spot-retries`, then on demand
/// if the batch allows it.
fn reclaimed(a: &Attempted, rules: &Rules) -> Next {
    if a.reclaims <= rules.spot_retries {
        Next::Retry {
            why: "AWS reclaimed the spot instance (interruption notice)",
            spot: true,
        }
    } else if rules.spot_fallback {
        Next::Retry {
            why:
                "AWS reclaimed the spot instance more often than spot-retries allows; on demand now",
            spot: false,
        }
    } else {
        Next::Final
    }
}

/// Which earlier attempt the next one resumes from, given every attempt so far in order
/// (`(number, outcome)`): the newest whose instance was lost under it, looking past attempts
/// that never started the job (no launch, no agent, no container), which saved nothing and
/// redid nothing. Its checkpoint holds the newest work saved (an attempt that restored one
/// lists those files in its own at once). None after any other ending: a job that failed by
/// itself starts again clean.
pub fn resume_from(attempts: &[(u32, Outcome)]) -> Option<u32> {
    for (n, outcome) in attempts.iter().rev() {
        match outcome {
            Outcome::InstanceLost => return Some(*n),
            Outcome::LaunchFailed | Outcome::AgentNeverOnline | Outcome::RemoteFailed => {}
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        let rules = Rules {
            retries: 2,
            retry_on_job_error: false,
            spot_fallback: true,
            spot_retries: 3,
        };
        let at = |outcome, capacity, spot, attempts| Attempted {
            outcome,
            capacity,
            spot,
            reclaimed: false,
            attempts,
            reclaims: 0,
            stopping: false,
        };
        use Outcome::*;
        /// What the decision should be: final, or a retry asking spot or not.
        #[derive(Debug, PartialEq)]
        enum Want {
            Final,
            Retry { spot: bool },
        }
        use Want::Retry;
        let table: Vec<(Attempted, Rules, Want)> = vec![
            (at(Succeeded, false, false, 1), rules, Want::Final),
            (at(JobFailed, false, false, 1), rules, Want::Final),
            (
                at(JobFailed, false, false, 1),
                Rules {
                    retry_on_job_error: true,
                    ..rules
                },
                Retry { spot: false },
            ),
            (
                at(TimedOut, false, false, 1),
                Rules {
                    retry_on_job_error: true,
                    ..rules
                },
                Want::Final,
            ),
            (
                at(InstanceLost, false, false, 1),
                rules,
                Retry { spot: false },
            ),
            (
                at(InstanceLost, false, false, 2),
                rules,
                Retry { spot: false },
            ),
            (at(InstanceLost, false, false, 3), rules, Want::Final),
            (
                at(InstanceLost, false, true, 1),
                rules,
                Retry { spot: false },
            ),
            (
                at(InstanceLost, false, true, 1),
                Rules {
                    spot_fallback: false,
                    ..rules
                },
                Retry { spot: true },
            ),
            (
                at(AgentNeverOnline, false, true, 1),
                rules,
                Retry { spot: true },
            ),
            (
                at(LaunchFailed, true, true, 1),
                rules,
                Retry { spot: false },
            ),
            (at(LaunchFailed, false, false, 1), rules, Want::Final),
            (
                at(RemoteFailed, false, false, 1),
                rules,
                Retry { spot: false },
            ),
            (at(Interrupted, false, false, 1), rules, Want::Final),
            (at(PreflightFailed, false, false, 1), rules, Want::Final),
            (at(Unknown, false, false, 1), rules, Want::Final),
            (
                Attempted {
                    stopping: true,
                    ..at(InstanceLost, false, false, 1)
                },
                rules,
                Want::Final,
            ),
            (
                at(InstanceLost, false, false, 1),
                Rules {
                    retries: 0,
                    ..rules
                },
                Want::Final,
            ),
        ];
        for (a, r, want) in table {
            let got = match decide(&a, &r) {
                Next::Final => Want::Final,
                Next::Retry { spot, .. } => Retry { spot },
            };
            assert_eq!(got, want, "{a:?} {r:?}");
        }
    }

    /// Spot reclaims (lost with an interruption record) against `retries` and `spot-retries`.
    #[test]
    fn reclaims_have_their_own_bound() {
        use Outcome::*;
        let rules = Rules {
            retries: 1,
            retry_on_job_error: false,
            spot_fallback: true,
            spot_retries: 3,
        };
        // (attempts so far, reclaims among them, this one reclaimed, on spot, outcome)
        let at = |attempts, reclaims, reclaimed, spot, outcome| Attempted {
            outcome,
            capacity: false,
            spot,
            reclaimed,
            attempts,
            reclaims,
            stopping: false,
        };
        #[derive(Debug, PartialEq)]
        enum Want {
            Final,
            Spot,
            OnDemand,
        }
        let want = |n: Next| match n {
            Next::Final => Want::Final,
            Next::Retry { spot: true, .. } => Want::Spot,
            Next::Retry { spot: false, .. } => Want::OnDemand,
        };
        let no_fallback = Rules {
            spot_fallback: false,
            ..rules
        };
        let table: Vec<(&str, Attempted, Rules, Want)> = vec![
            (
                "first reclaim: spot again",
                at(1, 1, true, true, InstanceLost),
                rules,
                Want::Spot,
            ),
            (
                "third reclaim: still spot",
                at(3, 3, true, true, InstanceLost),
                rules,
                Want::Spot,
            ),
            (
                "fourth reclaim: on demand",
                at(4, 4, true, true, InstanceLost),
                rules,
                Want::OnDemand,
            ),
            (
                "fourth reclaim, no fallback: final",
                at(4, 4, true, true, InstanceLost),
                no_fallback,
                Want::Final,
            ),
            // Three reclaims used no retries: a lost instance without a notice still has one.
            (
                "lost after 3 reclaims",
                at(4, 3, false, true, InstanceLost),
                rules,
                Want::OnDemand,
            ),
            (
                "lost twice after 3 reclaims",
                at(5, 3, false, false, InstanceLost),
                rules,
                Want::Final,
            ),
            // With retries = 0, reclaims are still retried.
            (
                "reclaim with retries 0",
                at(1, 1, true, true, InstanceLost),
                Rules {
                    retries: 0,
                    ..rules
                },
                Want::Spot,
            ),
            // The record alone is no reclaim: the job finished (or failed) before the end.
            (
                "notice, then the job succeeded",
                at(1, 1, true, true, Succeeded),
                rules,
                Want::Final,
            ),
            (
                "notice, then a MATLAB error",
                at(1, 1, true, true, JobFailed),
                rules,
                Want::Final,
            ),
            // On demand there is no reclaim: a lost instance is a failure.
            (
                "on demand, lost",
                at(1, 0, true, false, InstanceLost),
                rules,
                Want::OnDemand,
            ),
            (
                "spot lost without notice",
                at(1, 0, false, true, InstanceLost),
                rules,
                Want::OnDemand,
            ),
            (
                "spot lost without notice, no fallback",
                at(1, 0, false, true, InstanceLost),
                no_fallback,
                Want::Spot,
            ),
        ];
        for (case, a, r, w) in table {
            assert_eq!(want(decide(&a, &r)), w, "{case}");
        }
        let stopping = Attempted {
            stopping: true,
            ..at(1, 1, true, true, InstanceLost)
        };
        assert_eq!(want(decide(&stopping, &rules)), Want::Final);
    }

    #[test]
    fn a_retry_resumes_from_the_attempt_that_lost_its_instance() {
        use Outcome::*;
        /// Every attempt so far, and the one the next resumes from.
        type Case<'a> = (&'a [(u32, Outcome)], Option<u32>);
        let table: Vec<Case> = vec![
            (&[], None),
            (&[(1, InstanceLost)], Some(1)),
            (&[(1, InstanceLost), (2, InstanceLost)], Some(2)),
            (&[(1, InstanceLost), (2, AgentNeverOnline)], Some(1)),
            (
                &[(1, InstanceLost), (2, LaunchFailed), (3, RemoteFailed)],
                Some(1),
            ),
            (&[(1, InstanceLost), (2, JobFailed)], None),
            (&[(1, AgentNeverOnline)], None),
            (&[(1, JobFailed)], None),
            (&[(1, RemoteFailed)], None),
            (&[(1, LaunchFailed)], None),
        ];
        for (attempts, want) in table {
            assert_eq!(resume_from(attempts), want, "{attempts:?}");
        }
    }
}
