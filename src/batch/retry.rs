//! Whether a failed attempt is tried again, and how: a pure decision over the attempt's
//! outcome. The instance being the problem (lost, agent never online, no capacity, the
//! container never started) is retried on a fresh instance; the job's own failure (a MATLAB
//! error) only when the batch says `retry-on-job-error = true`.

use crate::report::Outcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempted {
    pub outcome: Outcome,
    /// The launch or the instance ran out of capacity (an EC2 capacity error).
    pub capacity: bool,
    /// The attempt ran on a spot instance.
    pub spot: bool,
    /// Attempts made so far, this one included.
    pub attempts: u32,
    /// The user asked the batch to stop.
    pub stopping: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub retries: u32,
    pub retry_on_job_error: bool,
    pub spot_fallback: bool,
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
    if a.stopping || a.attempts > rules.retries {
        return Next::Final;
    }
    match retryable(a, rules) {
        None => Next::Final,
        Some(why) => {
            // Spot trouble (reclaimed, no spot capacity) falls back to on-demand.
            let spot_trouble = a.spot && (a.outcome == Outcome::InstanceLost || a.capacity);
            Next::Retry {
                why,
                spot: a.spot && !(spot_trouble && rules.spot_fallback),
            }
        }
    }
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
        };
        let at = |outcome, capacity, spot, attempts| Attempted {
            outcome,
            capacity,
            spot,
            attempts,
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
}
