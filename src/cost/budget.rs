//! The budget: a decision the pool asks before each start (what has accrued, plus what the
//! running instances are committed to, plus the next job's expected cost, must stay within
//! it), what happens to running jobs once it is reached ("finish" or "stop"), and the
//! figures a dry run prints before any money is spent. Pure, table-tested; [`Meter`] keeps
//! the live times a pool feeds it and asks the same arithmetic the ledger uses.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::ledger::{self, billed_seconds, Span, Use, MIN_BILLED};

/// What happens to running jobs once the budget is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBudget {
    /// Start nothing new; let running jobs complete.
    #[default]
    Finish,
    /// Start nothing new; stop running jobs as Ctrl-C does (their outputs saved).
    Stop,
}

impl OnBudget {
    pub fn parse(s: &str) -> Result<OnBudget, String> {
        match s {
            "finish" => Ok(OnBudget::Finish),
            "stop" => Ok(OnBudget::Stop),
            other => Err(format!("'{other}' is not finish or stop")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Budget {
    pub max_usd: f64,
    pub on_budget: OnBudget,
}

/// Before a start: go, or hold (the budget would be passed).
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    Start,
    Hold { projected_usd: f64 },
}

/// A budget or price given by the user: a positive, finite number of dollars.
pub fn parse_usd(flag: &str, text: &str) -> Result<f64, String> {
    let t = text.trim().trim_start_matches('$');
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!(
            "{flag}: '{text}' is not an amount in US dollars (e.g. 25 or 0.096)"
        )),
    }
}

/// The worst case: `instances`, each living until its deadline, at `usd_per_hour`. What the
/// deadlines guarantee even when the client is gone.
pub fn worst_case_usd(instances: usize, lifetime: Duration, usd_per_hour: f64) -> f64 {
    let billed = lifetime.max(MIN_BILLED).as_secs_f64().ceil();
    instances as f64 * billed * usd_per_hour / 3600.0
}

/// The expected case: the median of earlier job times, times the jobs left, at
/// `usd_per_hour`; lanes sharing an instance share its seconds. None without earlier times.
pub fn expected_usd(
    earlier: &[Duration],
    jobs_left: usize,
    per_instance: usize,
    usd_per_hour: f64,
) -> Option<f64> {
    let median = median(earlier)?;
    Some(
        median.as_secs_f64() * jobs_left as f64 * usd_per_hour
            / 3600.0
            / per_instance.max(1) as f64,
    )
}

pub fn median(times: &[Duration]) -> Option<Duration> {
    let mut v = times.to_vec();
    v.sort();
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2),
    }
}

/// With `--detach` nobody watches the spend: each of `instances` instances gets a lifetime
/// that keeps the worst case within the budget. Ok(None): the deadlines already fit; Ok(Some):
/// the shorter lifetime to set; Err: even the shortest useful lifetime (`floor`) would pass
/// the budget.
pub fn detached_lifetime(
    instances: usize,
    lifetime: Option<Duration>,
    usd_per_hour: f64,
    max_usd: f64,
    floor: Duration,
) -> Result<Option<Duration>, String> {
    if let Some(l) = lifetime {
        if worst_case_usd(instances, l, usd_per_hour) <= max_usd {
            return Ok(None);
        }
    }
    let seconds = (max_usd * 3600.0 / usd_per_hour / instances.max(1) as f64).floor();
    let fits = Duration::from_secs_f64(seconds.max(0.0));
    if fits < floor.max(MIN_BILLED) {
        return Err(format!(
            "{instances} instance(s) at ${usd_per_hour:.4}/h can each live at most {} within ${max_usd:.2}, less than the {} a job needs beyond its boot (the deadline margin)",
            crate::cmd::short_duration(fits),
            crate::cmd::short_duration(floor.max(MIN_BILLED))
        ));
    }
    Ok(Some(fits))
}

/// The decision before a start: what is accrued and committed, plus the next job's expected
/// cost, within the budget.
pub fn gate(budget: &Budget, projected_with_next_usd: f64) -> Gate {
    // A hair of slack for float sums: a figure equal to the budget fits.
    if projected_with_next_usd <= budget.max_usd * (1.0 + 1e-9) {
        Gate::Start
    } else {
        Gate::Hold {
            projected_usd: projected_with_next_usd,
        }
    }
}

/// Whether running jobs must be stopped now: "stop", and what is accrued plus what the
/// running instances are committed to has reached the budget.
pub fn must_stop(budget: &Budget, projected_usd: f64) -> bool {
    budget.on_budget == OnBudget::Stop && projected_usd >= budget.max_usd
}

/// The live account of a pool: its instances and the jobs on them, as the pool sees them.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    instances: BTreeMap<String, Live>,
    uses: Vec<Use>,
    /// Finished jobs' run times: the estimate for the next.
    done: Vec<Duration>,
    /// Launch to first job start, per instance: the estimate for a new instance's boot.
    boots: Vec<Duration>,
    /// An earlier run's median job time: the estimate until a job of this run finishes.
    earlier: Option<Duration>,
    /// New instances a start was allowed for and not launched yet: what each will cost.
    reserved: Vec<f64>,
}

#[derive(Debug, Clone)]
struct Live {
    launched: SystemTime,
    ended: Option<SystemTime>,
    rate: Option<f64>,
    spot: bool,
    /// Start times of the jobs running on it now, by (job, attempt).
    running: BTreeMap<(String, u32), SystemTime>,
}

impl Meter {
    pub fn launched(&mut self, id: &str, at: SystemTime, rate: Option<f64>, spot: bool) {
        self.instances.insert(
            id.to_string(),
            Live {
                launched: at,
                ended: None,
                rate,
                spot,
                running: BTreeMap::new(),
            },
        );
    }

    /// The price became known (or changed: spot) after the launch.
    pub fn priced(&mut self, id: &str, rate: Option<f64>) {
        if let Some(i) = self.instances.get_mut(id) {
            i.rate = rate;
        }
    }

    pub fn ended(&mut self, id: &str, at: SystemTime) {
        if let Some(i) = self.instances.get_mut(id) {
            i.ended = Some(at);
        }
    }

    pub fn job_started(&mut self, job: &str, attempt: u32, id: &str, at: SystemTime) {
        if let Some(i) = self.instances.get_mut(id) {
            if i.running.is_empty() && !self.uses.iter().any(|u| u.instance_id == id) {
                self.boots
                    .push(at.duration_since(i.launched).unwrap_or_default());
            }
            i.running.insert((job.to_string(), attempt), at);
        }
    }

    pub fn job_ended(&mut self, job: &str, attempt: u32, id: &str, at: SystemTime, failed: bool) {
        let Some(i) = self.instances.get_mut(id) else {
            return;
        };
        let Some(start) = i.running.remove(&(job.to_string(), attempt)) else {
            return;
        };
        if !failed {
            self.done.push(at.duration_since(start).unwrap_or_default());
        }
        self.uses.push(Use {
            job_id: job.to_string(),
            attempt,
            instance_id: id.to_string(),
            start,
            end: at,
            failed,
        });
    }

    /// The expected run time of a job: the median of those that finished, else an earlier
    /// run's.
    pub fn expected_job(&self) -> Option<Duration> {
        median(&self.done).or(self.earlier)
    }

    /// Until a job of this run finishes, expect jobs to take `d` (an earlier run's median).
    pub fn expect(&mut self, d: Duration) {
        self.earlier = Some(d);
    }

    /// Whether every instance has a price (a budget needs it).
    pub fn priced_all(&self) -> bool {
        self.instances.values().all(|i| i.rate.is_some())
    }

    /// What has accrued by `now`: ended instances as billed, running ones up to now (their
    /// 60 s minimum included).
    pub fn accrued_usd(&self, now: SystemTime) -> f64 {
        self.ledger(now).total_usd().unwrap_or(f64::INFINITY)
    }

    /// Accrued plus committed: every instance at least its minimum, and each running job's
    /// expected remaining time on it (the median job time, less what it has run).
    pub fn projected_usd(&self, now: SystemTime) -> f64 {
        self.instances
            .values()
            .map(|i| self.projected_one(i, now, None))
            .sum::<f64>()
            + self.reserved.iter().sum::<f64>()
    }

    /// A start on a new instance was allowed: count it until the instance is launched (or
    /// its launch fails), so starts decided at the same moment see each other.
    pub fn reserve(&mut self, usd: f64) {
        self.reserved.push(usd);
    }

    /// One reserved launch happened, or failed.
    pub fn release(&mut self) {
        if !self.reserved.is_empty() {
            self.reserved.remove(0);
        }
    }

    /// The projection with the next job added: on instance `on` (a lane free there), or on a
    /// new instance (None) at `new_rate`, which costs a boot and its minimum too.
    pub fn projected_with_next(
        &self,
        now: SystemTime,
        on: Option<&str>,
        new_rate: Option<f64>,
    ) -> f64 {
        let next = self.expected_job().unwrap_or_default();
        match on {
            Some(id) => self
                .instances
                .iter()
                .map(|(k, i)| self.projected_one(i, now, (k == id).then_some(next)))
                .sum(),
            None => {
                let boot = median(&self.boots).unwrap_or_default();
                let Some(rate) = new_rate else {
                    return f64::INFINITY;
                };
                let secs = (boot + next).max(MIN_BILLED).as_secs_f64();
                self.projected_usd(now) + secs * rate / 3600.0
            }
        }
    }

    fn projected_one(&self, i: &Live, now: SystemTime, extra: Option<Duration>) -> f64 {
        let Some(rate) = i.rate else {
            return f64::INFINITY;
        };
        if let Some(end) = i.ended {
            return billed_seconds(i.launched, end) as f64 * rate / 3600.0;
        }
        let age = now.duration_since(i.launched).unwrap_or_default();
        let expected = self.expected_job().unwrap_or_default();
        // Lanes run side by side: the instance runs until its longest remaining job ends.
        let remaining = i
            .running
            .values()
            .map(|s| expected.saturating_sub(now.duration_since(*s).unwrap_or_default()))
            .max()
            .unwrap_or_default();
        let until = age + remaining + extra.unwrap_or_default();
        until.max(MIN_BILLED).as_secs_f64().ceil() * rate / 3600.0
    }

    /// The ledger of everything so far, with running instances and jobs up to `now`.
    pub fn ledger(&self, now: SystemTime) -> ledger::Bill {
        let spans: Vec<Span> = self
            .instances
            .iter()
            .map(|(id, i)| Span {
                id: id.clone(),
                launched: i.launched,
                ended: i.ended.unwrap_or(now),
                end_from: if i.ended.is_some() {
                    ledger::EndFrom::Client
                } else {
                    ledger::EndFrom::Running
                },
                rate: i.rate,
                on_demand_rate: None,
                spot: i.spot,
            })
            .collect();
        let mut uses = self.uses.clone();
        for (id, i) in &self.instances {
            for ((job, attempt), start) in &i.running {
                uses.push(Use {
                    job_id: job.clone(),
                    attempt: *attempt,
                    instance_id: id.clone(),
                    start: *start,
                    end: now,
                    failed: false,
                });
            }
        }
        ledger::bill(&spans, &uses)
    }
}

/// A budget as a pool keeps it: the rate it counts with, the live meter, and whether it has
/// been reached (after which nothing starts again).
#[derive(Debug)]
pub struct Spend {
    pub budget: Budget,
    /// USD per hour counted for every instance (the user's price, else the highest on-demand
    /// price of the types the pool may launch: a bound for spot too).
    pub rate: f64,
    meter: std::sync::Mutex<Meter>,
    reached: std::sync::Mutex<Option<String>>,
}

impl Spend {
    pub fn new(budget: Budget, rate: f64) -> Spend {
        Spend {
            budget,
            rate,
            meter: std::sync::Mutex::new(Meter::default()),
            reached: std::sync::Mutex::new(None),
        }
    }

    fn meter(&self) -> std::sync::MutexGuard<'_, Meter> {
        self.meter.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why the budget stopped the pool, once it has.
    pub fn reached(&self) -> Option<String> {
        self.reached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn reach(&self, why: String) {
        let mut r = self.reached.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = Some(why);
        }
    }

    /// Before a start, on instance `on` (None: a new instance): Ok to start, or why not (the
    /// words contain "budget"). Once the budget holds a start, nothing starts again.
    pub fn may_start(&self, on: Option<&str>, now: SystemTime) -> Result<(), String> {
        if let Some(why) = self.reached() {
            return Err(why);
        }
        let (projected, before) = {
            let m = self.meter();
            (
                m.projected_with_next(now, on, Some(self.rate)),
                m.projected_usd(now),
            )
        };
        match gate(&self.budget, projected) {
            Gate::Start => {
                if on.is_none() {
                    self.meter().reserve(projected - before);
                }
                Ok(())
            }
            Gate::Hold { projected_usd } => {
                let accrued = self.meter().accrued_usd(now);
                let why = format!(
                    "not started: the budget of ${:.2} was reached (accrued ${accrued:.4}; with what the running instances are committed to and this job, ${projected_usd:.4})",
                    self.budget.max_usd
                );
                self.reach(why.clone());
                Err(why)
            }
        }
    }

    /// Whether running jobs must be stopped now ("stop", and the budget reached).
    pub fn should_stop(&self, now: SystemTime) -> bool {
        let projected = self.meter().projected_usd(now);
        let stop = must_stop(&self.budget, projected);
        if stop {
            self.reach(format!(
                "not started: the budget of ${:.2} was reached (running jobs were stopped, on-budget = \"stop\")",
                self.budget.max_usd
            ));
        }
        stop
    }

    pub fn launched(&self, id: &str, at: SystemTime, spot: bool) {
        let mut m = self.meter();
        m.release();
        m.launched(id, at, Some(self.rate), spot);
    }

    /// A launch this budget allowed failed before any instance existed.
    pub fn launch_failed(&self) {
        self.meter().release();
    }

    /// Until a job of this run finishes, expect jobs to take `d` (an earlier run's median):
    /// the first starts are then gated on it too.
    pub fn expect(self, d: Option<Duration>) -> Spend {
        if let Some(d) = d {
            self.meter().expect(d);
        }
        self
    }

    pub fn ended(&self, id: &str, at: SystemTime) {
        self.meter().ended(id, at);
    }

    pub fn job_started(&self, job: &str, attempt: u32, id: &str, at: SystemTime) {
        self.meter().job_started(job, attempt, id, at);
    }

    pub fn job_ended(&self, job: &str, attempt: u32, id: &str, at: SystemTime, failed: bool) {
        self.meter().job_ended(job, attempt, id, at, failed);
    }

    /// What has accrued by `now`.
    pub fn accrued_usd(&self, now: SystemTime) -> f64 {
        self.meter().accrued_usd(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    #[test]
    fn amounts_are_checked() {
        assert_eq!(parse_usd("--max-cost", "25"), Ok(25.0));
        assert_eq!(parse_usd("--max-cost", "$2.50"), Ok(2.5));
        for bad in ["0", "-1", "ten", "inf", "NaN", ""] {
            assert!(parse_usd("--max-cost", bad).is_err(), "{bad}");
        }
        assert_eq!(OnBudget::parse("stop"), Ok(OnBudget::Stop));
        assert!(OnBudget::parse("halt").is_err());
    }

    #[test]
    fn worst_and_expected_cases() {
        // 4 instances for 24h30m at $0.096/h.
        let w = worst_case_usd(4, Duration::from_secs(24 * 3600 + 1800), 0.096);
        assert!((w - 9.408).abs() < 1e-9, "{w}");
        // A deadline under a minute still bills the minute.
        assert!((worst_case_usd(1, Duration::from_secs(10), 3.6) - 0.06).abs() < 1e-9);
        let times = [600, 1200, 900].map(Duration::from_secs);
        let e = expected_usd(&times, 10, 1, 0.36).unwrap();
        assert!((e - 0.9).abs() < 1e-9, "{e}");
        assert!((expected_usd(&times, 10, 2, 0.36).unwrap() - 0.45).abs() < 1e-9);
        assert_eq!(expected_usd(&[], 10, 1, 0.36), None);
        assert_eq!(
            median(&[1, 3].map(Duration::from_secs)),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn detached_lifetimes_fit_the_budget_or_are_refused() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        let m = |n: u64| Duration::from_secs(n * 60);
        // (instances, lifetime, rate, budget) -> shorter lifetime, unchanged, or refused
        assert_eq!(detached_lifetime(2, Some(h(2)), 1.0, 10.0, m(30)), Ok(None));
        assert_eq!(
            detached_lifetime(2, Some(h(10)), 1.0, 10.0, m(30)),
            Ok(Some(h(5)))
        );
        assert_eq!(detached_lifetime(4, None, 1.0, 2.0, m(30)), Ok(Some(m(30))));
        let e = detached_lifetime(10, Some(h(24)), 1.0, 2.0, m(30)).unwrap_err();
        assert!(e.contains("12m00s") && e.contains("30m00s"), "{e}");
        let fits = detached_lifetime(3, Some(h(24)), 0.5, 7.0, m(30))
            .unwrap()
            .unwrap();
        assert!(worst_case_usd(3, fits, 0.5) <= 7.0);
    }

    #[test]
    fn the_gate_and_the_stop() {
        let finish = Budget {
            max_usd: 1.0,
            on_budget: OnBudget::Finish,
        };
        let stop = Budget {
            max_usd: 1.0,
            on_budget: OnBudget::Stop,
        };
        // (projected with the next job, gate opens)
        for (p, open) in [
            (0.5, true),
            (1.0, true),
            (1.0001, false),
            (f64::INFINITY, false),
        ] {
            assert_eq!(gate(&finish, p) == Gate::Start, open, "{p}");
        }
        assert!(!must_stop(&finish, 5.0));
        assert!(!must_stop(&stop, 0.99));
        assert!(must_stop(&stop, 1.0));
    }

    #[test]
    fn the_meter_projects_what_running_instances_are_committed_to() {
        // $3.6/h: a dollar is 1000 seconds.
        let r = Some(3.6);
        let mut m = Meter::default();
        m.launched("i-a", t(0), r, false);
        m.launched("i-b", t(0), r, false);
        // Nothing has finished: no estimate, so each instance is committed to its minute.
        assert!((m.projected_usd(t(10)) - 0.12).abs() < 1e-9);
        m.job_started("a", 1, "i-a", t(2));
        m.job_started("b", 1, "i-b", t(2));
        m.job_ended("a", 1, "i-a", t(42), false);
        // At 42 s: a took 40 s; b (started at 2) is expected to end at 42 too.
        assert_eq!(m.expected_job(), Some(Duration::from_secs(40)));
        let now = t(42);
        assert!((m.projected_usd(now) - 0.12).abs() < 1e-9);
        // The next job on i-a: it runs to 82 s, i-b to its minute.
        let with_next = m.projected_with_next(now, Some("i-a"), r);
        assert!((with_next - 0.142).abs() < 1e-9, "{with_next}");
        // On a new instance: the boot (2 s) and the job (40 s) still bill a minute.
        let on_new = m.projected_with_next(now, None, r);
        assert!((on_new - 0.18).abs() < 1e-9, "{on_new}");
        let budget = Budget {
            max_usd: 0.16,
            on_budget: OnBudget::Finish,
        };
        assert_eq!(gate(&budget, with_next), Gate::Start);
        assert!(matches!(gate(&budget, on_new), Gate::Hold { .. }));
        // What has accrued: two instances up 42 s, each billed its minute so far.
        assert!((m.accrued_usd(now) - 0.12).abs() < 1e-9);
        m.ended("i-b", t(50));
        assert!((m.ledger(t(100)).total_usd().unwrap() - 0.16).abs() < 1e-9);
        // An instance without a price makes the projection infinite: nothing starts.
        m.launched("i-c", t(60), None, false);
        assert!(!m.priced_all());
        assert!(matches!(
            gate(&budget, m.projected_usd(t(61))),
            Gate::Hold { .. }
        ));
    }

    #[test]
    fn a_pool_under_a_budget_of_about_three_jobs() {
        // 40 s jobs, 2 s boots, $3.6/h; a budget of 160 instance-seconds.
        let s = Spend::new(
            Budget {
                max_usd: 0.16,
                on_budget: OnBudget::Finish,
            },
            3.6,
        );
        assert_eq!(s.may_start(None, t(0)), Ok(()));
        s.launched("i-a", t(0), false);
        assert_eq!(s.may_start(None, t(0)), Ok(()));
        s.launched("i-b", t(0), false);
        s.job_started("j1", 1, "i-a", t(2));
        s.job_started("j2", 1, "i-b", t(2));
        s.job_ended("j1", 1, "i-a", t(42), false);
        // j3 on i-a: i-a to 82 s, i-b its minute: 142 s fits.
        assert_eq!(s.may_start(Some("i-a"), t(42)), Ok(()));
        s.job_started("j3", 1, "i-a", t(42));
        s.job_ended("j2", 1, "i-b", t(42), false);
        // j4 on i-b: 82 + 82 = 164 s: held, and nothing starts after.
        let why = s.may_start(Some("i-b"), t(43)).unwrap_err();
        assert!(why.contains("budget of $0.16"), "{why}");
        assert!(s.may_start(None, t(200)).is_err());
        assert!(!s.should_stop(t(43)), "finish lets running jobs complete");
        let stop = Spend::new(
            Budget {
                max_usd: 0.1,
                on_budget: OnBudget::Stop,
            },
            3.6,
        );
        stop.launched("i-a", t(0), false);
        stop.job_started("j1", 1, "i-a", t(2));
        assert!(!stop.should_stop(t(30)));
        assert!(stop.should_stop(t(100)));
        assert!(stop.reached().unwrap().contains("budget"));
        // Two starts decided at once, before either instance exists, see each other.
        let s = Spend::new(
            Budget {
                max_usd: 0.1,
                on_budget: OnBudget::Finish,
            },
            3.6,
        );
        assert_eq!(s.may_start(None, t(0)), Ok(()));
        assert!(
            s.may_start(None, t(0)).is_err(),
            "a second minute would pass $0.10"
        );
        let s = Spend::new(
            Budget {
                max_usd: 0.12,
                on_budget: OnBudget::Finish,
            },
            3.6,
        );
        assert_eq!(s.may_start(None, t(0)), Ok(()));
        s.launch_failed();
        assert_eq!(s.may_start(None, t(0)), Ok(()));
        s.launched("i-a", t(0), false);
        assert_eq!(s.may_start(None, t(0)), Ok(()));
        // An earlier run's job time gates the first starts too: 100 s jobs, a 150 s budget.
        let s = Spend::new(
            Budget {
                max_usd: 0.15,
                on_budget: OnBudget::Finish,
            },
            3.6,
        )
        .expect(Some(Duration::from_secs(100)));
        assert_eq!(s.may_start(None, t(0)), Ok(()));
        s.launched("i-a", t(0), false);
        s.job_started("j1", 1, "i-a", t(0));
        assert!(
            s.may_start(None, t(1)).is_err(),
            "a second 100 s job would pass $0.15"
        );
    }
}
