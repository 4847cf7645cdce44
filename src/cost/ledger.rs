//! The ledger: what each instance cost, and which job caused it. Pure arithmetic over the
//! instances' launch and end times (EC2's) and the jobs' times on them (the pool's),
//! table-tested.
//!
//! The billing rule is Linux's, on demand and spot: per second, 60 s at least. A job's cost
//! is the instance time it caused: the boot when it was the job the instance was launched for
//! (and the rest of the 60 s minimum), its run (a second shared by two lanes is half each's),
//! a gap before it on a reused instance (its handover), and the idle tail after it when it
//! was the instance's last job. Attempts that did not succeed are kept apart, so a summary
//! can show what the failures cost.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Linux instances are billed per second with this minimum.
pub const MIN_BILLED: Duration = Duration::from_secs(60);

/// How an instance's end time is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndFrom {
    /// EC2's state transition time (the reason EC2 gives for the termination).
    Ec2,
    /// When this client saw EC2 report it terminated (an endpoint that gives no transition
    /// time).
    Client,
    /// It still runs: the figure is what has accrued so far.
    Running,
}

/// One instance: when it ran, and at what rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub id: String,
    pub launched: SystemTime,
    pub ended: SystemTime,
    pub end_from: EndFrom,
    /// USD per hour that applied; None when no price could be had.
    pub rate: Option<f64>,
    /// The on-demand rate of the same type, for a spot instance's savings.
    pub on_demand_rate: Option<f64>,
    pub spot: bool,
}

/// One job attempt's time on an instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Use {
    pub job_id: String,
    pub attempt: u32,
    pub instance_id: String,
    pub start: SystemTime,
    pub end: SystemTime,
    /// The attempt did not succeed (its cost is shown apart).
    pub failed: bool,
}

/// What one attempt caused on one instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    pub job_id: String,
    pub attempt: u32,
    pub instance_id: String,
    /// Instance-seconds charged to it.
    pub seconds: f64,
    pub usd: Option<f64>,
    pub failed: bool,
    pub spot: bool,
    /// What the same seconds would have cost on demand (a spot line's savings).
    pub on_demand_usd: Option<f64>,
}

/// One instance's bill.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceBill {
    pub id: String,
    pub billed_s: u64,
    pub usd: Option<f64>,
    pub spot: bool,
    pub on_demand_usd: Option<f64>,
    pub end_from: EndFrom,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Bill {
    pub instances: Vec<InstanceBill>,
    pub lines: Vec<Line>,
    /// Instance-seconds no job caused (an instance that ran no job at all).
    pub unattributed_s: f64,
}

/// A job's share: every attempt, and the failed ones apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct JobCost {
    pub seconds: f64,
    pub usd: Option<f64>,
    pub failed_attempts: u32,
    pub failed_usd: Option<f64>,
    pub on_demand_usd: Option<f64>,
}

/// Seconds billed for an instance that ran from `launched` to `ended`.
pub fn billed_seconds(launched: SystemTime, ended: SystemTime) -> u64 {
    let ran = ended.duration_since(launched).unwrap_or_default();
    let whole = ran.as_secs() + u64::from(ran.subsec_nanos() > 0);
    whole.max(MIN_BILLED.as_secs())
}

fn usd(seconds: f64, rate: Option<f64>) -> Option<f64> {
    rate.map(|r| seconds * r / 3600.0)
}

fn add(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? + b?)
}

impl Bill {
    /// Every instance's cost; None when any instance's price is unknown.
    pub fn total_usd(&self) -> Option<f64> {
        self.instances.iter().try_fold(0.0, |t, i| Some(t + i.usd?))
    }

    pub fn billed_seconds(&self) -> u64 {
        self.instances.iter().map(|i| i.billed_s).sum()
    }

    /// What spot saved against on-demand for the same seconds (None when a rate is missing;
    /// 0 when nothing ran on spot).
    pub fn spot_savings_usd(&self) -> Option<f64> {
        self.instances
            .iter()
            .filter(|i| i.spot)
            .try_fold(0.0, |t, i| Some(t + i.on_demand_usd? - i.usd?))
    }

    pub fn job(&self, job_id: &str) -> JobCost {
        let mut c = JobCost {
            usd: Some(0.0),
            failed_usd: Some(0.0),
            on_demand_usd: Some(0.0),
            ..JobCost::default()
        };
        let mut failed = std::collections::BTreeSet::new();
        for l in self.lines.iter().filter(|l| l.job_id == job_id) {
            c.seconds += l.seconds;
            c.usd = add(c.usd, l.usd);
            c.on_demand_usd = add(
                c.on_demand_usd,
                if l.spot { l.on_demand_usd } else { l.usd },
            );
            if l.failed {
                failed.insert(l.attempt);
                c.failed_usd = add(c.failed_usd, l.usd);
            }
        }
        c.failed_attempts = failed.len() as u32;
        c
    }

    /// Every job id with a line, in order.
    pub fn jobs(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lines.iter().map(|l| l.job_id.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// Bill every instance and share each one's seconds among the attempts that ran on it.
pub fn bill(spans: &[Span], uses: &[Use]) -> Bill {
    let mut out = Bill::default();
    for span in spans {
        let billed = billed_seconds(span.launched, span.ended);
        let end = span.ended.max(span.launched);
        let mut on: Vec<&Use> = uses.iter().filter(|u| u.instance_id == span.id).collect();
        on.sort_by_key(|u| (u.start, u.end));
        out.instances.push(InstanceBill {
            id: span.id.clone(),
            billed_s: billed,
            usd: usd(billed as f64, span.rate),
            spot: span.spot,
            on_demand_usd: usd(billed as f64, span.on_demand_rate),
            end_from: span.end_from,
        });
        if on.is_empty() {
            out.unattributed_s += billed as f64;
            continue;
        }
        let shares = share(span.launched, end, billed, &on);
        // One line per attempt on this instance, in the order they started.
        let mut lines: BTreeMap<(String, u32), f64> = BTreeMap::new();
        for (u, s) in on.iter().zip(shares) {
            *lines.entry((u.job_id.clone(), u.attempt)).or_default() += s;
        }
        for u in &on {
            let Some(seconds) = lines.remove(&(u.job_id.clone(), u.attempt)) else {
                continue;
            };
            out.lines.push(Line {
                job_id: u.job_id.clone(),
                attempt: u.attempt,
                instance_id: span.id.clone(),
                seconds,
                usd: usd(seconds, span.rate),
                failed: u.failed,
                spot: span.spot,
                on_demand_usd: usd(seconds, span.on_demand_rate),
            });
        }
    }
    out
}

/// The seconds of one instance (`launched`..`end`, `billed` in all) shared among the uses on
/// it, sorted by start: a use's own time (split evenly among uses running at once), the boot
/// and the rest of the minimum for the first, a gap for the use after it, the tail for the
/// last to end.
fn share(launched: SystemTime, end: SystemTime, billed: u64, on: &[&Use]) -> Vec<f64> {
    let secs = |t: SystemTime| t.duration_since(launched).unwrap_or_default().as_secs_f64();
    let total = secs(end);
    let clip = |t: SystemTime| secs(t).clamp(0.0, total);
    let spans: Vec<(f64, f64)> = on
        .iter()
        .map(|u| {
            let a = clip(u.start);
            (a, clip(u.end).max(a))
        })
        .collect();
    let mut shares = vec![0.0; on.len()];
    let mut cuts: Vec<f64> = vec![0.0, total];
    for (a, b) in &spans {
        cuts.push(*a);
        cuts.push(*b);
    }
    cuts.sort_by(f64::total_cmp);
    cuts.dedup();
    let last_end = spans.iter().map(|s| s.1).fold(0.0, f64::max);
    for w in cuts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let len = b - a;
        if len <= 0.0 {
            continue;
        }
        let active: Vec<usize> = (0..spans.len())
            .filter(|&i| spans[i].0 <= a && spans[i].1 >= b)
            .collect();
        if !active.is_empty() {
            for &i in &active {
                shares[i] += len / active.len() as f64;
            }
            continue;
        }
        let owners: Vec<usize> = if b <= spans[0].0 {
            // The boot: the job the instance was launched for.
            vec![0]
        } else if a >= last_end {
            // The idle tail: whoever ended last.
            (0..spans.len())
                .filter(|&i| spans[i].1 == last_end)
                .collect()
        } else {
            // A gap on a reused instance: the next job's handover.
            (0..spans.len())
                .filter(|&i| spans[i].0 >= b)
                .take(1)
                .collect()
        };
        let owners = if owners.is_empty() { vec![0] } else { owners };
        for &i in &owners {
            shares[i] += len / owners.len() as f64;
        }
    }
    // The rest of the 60 s minimum (and the part of a second billed whole): the launcher's.
    shares[0] += (billed as f64 - total).max(0.0);
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    fn span(id: &str, from: u64, to: u64, rate: Option<f64>) -> Span {
        Span {
            id: id.into(),
            launched: t(from),
            ended: t(to),
            end_from: EndFrom::Ec2,
            rate,
            on_demand_rate: None,
            spot: false,
        }
    }

    fn used(job: &str, attempt: u32, id: &str, from: u64, to: u64, failed: bool) -> Use {
        Use {
            job_id: job.into(),
            attempt,
            instance_id: id.into(),
            start: t(from),
            end: t(to),
            failed,
        }
    }

    #[test]
    fn billing_is_per_second_with_a_minute_minimum() {
        for (ran_ms, billed) in [
            (0, 60),
            (59_000, 60),
            (60_000, 60),
            (61_000, 61),
            (61_200, 62),
            (3_600_000, 3600),
        ] {
            let end = t(0) + Duration::from_millis(ran_ms);
            assert_eq!(billed_seconds(t(0), end), billed, "{ran_ms} ms");
        }
        // An end before the launch (clocks) is the minimum, not a panic.
        assert_eq!(billed_seconds(t(10), t(0)), 60);
    }

    #[test]
    fn jobs_share_their_instances_seconds() {
        // rate 3.6 $/h = $0.001 per second, so dollars are seconds / 1000.
        let r = Some(3.6);
        // (name, spans, uses, expected seconds per (job, attempt))
        type Case = (
            &'static str,
            Vec<Span>,
            Vec<Use>,
            Vec<(&'static str, u32, f64)>,
        );
        let cases: Vec<Case> =
            vec![
            (
                "one job: boot, run and tail are all its own",
                vec![span("i-1", 0, 300, r)],
                vec![used("a", 1, "i-1", 40, 280, false)],
                vec![("a", 1, 300.0)],
            ),
            (
                "a short job pays the minute",
                vec![span("i-1", 0, 20, r)],
                vec![used("a", 1, "i-1", 5, 15, false)],
                vec![("a", 1, 60.0)],
            ),
            (
                "a reused instance: boot to the first, the gap to the next, the tail to the last",
                vec![span("i-1", 0, 400, r)],
                vec![used("a", 1, "i-1", 30, 200, false), used("b", 1, "i-1", 210, 390, false)],
                vec![("a", 1, 200.0), ("b", 1, 200.0)],
            ),
            (
                "two lanes: a second shared by two is half each's",
                vec![span("i-1", 0, 200, r)],
                vec![used("a", 1, "i-1", 20, 120, false), used("b", 1, "i-1", 20, 180, false)],
                // a: boot 20 / 2 (both started together: the first sorted gets it) ...
                vec![("a", 1, 20.0 + 50.0), ("b", 1, 50.0 + 60.0 + 20.0)],
            ),
            (
                "a failed attempt and its retry on a fresh instance",
                vec![span("i-1", 0, 100, r), span("i-2", 110, 400, r)],
                vec![used("a", 1, "i-1", 30, 90, true), used("a", 2, "i-2", 140, 390, false)],
                vec![("a", 1, 100.0), ("a", 2, 290.0)],
            ),
        ];
        for (name, spans, uses, want) in cases {
            let b = bill(&spans, &uses);
            let total: f64 = b.lines.iter().map(|l| l.seconds).sum();
            assert!(
                (total - b.billed_seconds() as f64).abs() < 1e-9,
                "{name}: the lines add up to the bill: {total} vs {}",
                b.billed_seconds()
            );
            for (job, attempt, secs) in want {
                let got: f64 = b
                    .lines
                    .iter()
                    .filter(|l| l.job_id == job && l.attempt == attempt)
                    .map(|l| l.seconds)
                    .sum();
                assert!(
                    (got - secs).abs() < 1e-9,
                    "{name}: {job}#{attempt} {got} != {secs}"
                );
            }
            let usd = b.total_usd().unwrap();
            assert!(
                (usd - b.billed_seconds() as f64 / 1000.0).abs() < 1e-9,
                "{name}"
            );
        }
    }

    #[test]
    fn failed_attempts_are_counted_apart_and_unknown_prices_stay_unknown() {
        let b = bill(
            &[
                span("i-1", 0, 100, Some(3.6)),
                span("i-2", 110, 400, Some(3.6)),
            ],
            &[
                used("a", 1, "i-1", 30, 90, true),
                used("a", 2, "i-2", 140, 390, false),
            ],
        );
        let c = b.job("a");
        assert_eq!(c.failed_attempts, 1);
        assert!((c.usd.unwrap() - 0.39).abs() < 1e-9);
        assert!((c.failed_usd.unwrap() - 0.1).abs() < 1e-9);
        let b = bill(
            &[span("i-1", 0, 100, Some(3.6)), span("i-2", 0, 100, None)],
            &[
                used("a", 1, "i-1", 0, 90, false),
                used("b", 1, "i-2", 0, 90, false),
            ],
        );
        assert_eq!(b.total_usd(), None);
        assert!(b.job("a").usd.is_some() && b.job("b").usd.is_none());
        // An instance no job used is billed all the same.
        let b = bill(&[span("i-1", 0, 100, Some(3.6))], &[]);
        assert_eq!(b.unattributed_s, 100.0);
        assert!((b.total_usd().unwrap() - 0.1).abs() < 1e-9);
    }

    #[test]
    fn spot_savings_are_against_on_demand_for_the_same_seconds() {
        let mut s = span("i-1", 0, 3600, Some(0.03));
        s.spot = true;
        s.on_demand_rate = Some(0.096);
        let b = bill(
            &[s, span("i-2", 0, 3600, Some(0.096))],
            &[used("a", 1, "i-1", 0, 3600, false)],
        );
        assert!((b.spot_savings_usd().unwrap() - 0.066).abs() < 1e-9);
        assert!((b.job("a").on_demand_usd.unwrap() - 0.096).abs() < 1e-9);
        let mut s = span("i-1", 0, 3600, Some(0.03));
        s.spot = true;
        assert_eq!(bill(&[s], &[]).spot_savings_usd(), None);
    }
}
