//! Before paying: the price and budget a run was given (flags over `[batch]`), the price a
//! budget needs (refused before launch when there is none), the dry run's worst and expected
//! cases, and the shorter deadline that keeps a client-less instance within its budget.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::budget::{self, Budget, OnBudget};
use super::prices::{Price, Priced, Prices};
use crate::plan::{Plan, DEADLINE_TAG};

/// The price and budget a run was given.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// `--price` / `[batch] price`, USD per hour.
    pub price: Option<f64>,
    pub budget: Option<Budget>,
}

impl Limits {
    /// From the flags (`--price`, `--max-cost`, `--on-budget`), then the batch file's keys.
    pub fn settle(
        flags: &crate::cli::CostArgs,
        on_budget: Option<&str>,
        file: Option<&crate::batch::file::Settings>,
    ) -> Result<Limits, String> {
        let price = match &flags.price {
            Some(p) => Some(budget::parse_usd("--price", p)?),
            None => file.and_then(|f| f.price),
        };
        let max = match &flags.max_cost {
            Some(m) => Some(budget::parse_usd("--max-cost", m)?),
            None => file.and_then(|f| f.max_cost),
        };
        let on = match on_budget.or(file.and_then(|f| f.on_budget.as_deref())) {
            Some(o) => OnBudget::parse(o).map_err(|e| format!("--on-budget: {e}"))?,
            None => OnBudget::Finish,
        };
        if on_budget.is_some() && max.is_none() {
            return Err(
                "--on-budget: there is no budget (--max-cost or [batch] max-cost) to be reached"
                    .into(),
            );
        }
        Ok(Limits {
            price,
            budget: max.map(|max_usd| Budget {
                max_usd,
                on_budget: on,
            }),
        })
    }
}

/// The hourly price a budget counts with for `instance_types`: the user's, else the highest
/// on-demand price of the types (a launch may fall back to any; spot never costs more than
/// on-demand, so the bound holds for spot too). Err: one line saying why there is none.
pub async fn budget_price(prices: &Prices<'_>, instance_types: &[String]) -> Result<Price, String> {
    match plan_price(prices, instance_types).await {
        (Priced::Known(p), _) => Ok(p),
        (Priced::Unknown(why), t) => Err(format!(
            "--max-cost: no price for {t} ({why}); a budget needs one: give --price USD_PER_HOUR"
        )),
    }
}

/// The highest on-demand price of `instance_types` (the type a launch may end up with), or
/// why one of them has none (and which).
pub async fn plan_price(prices: &Prices<'_>, instance_types: &[String]) -> (Priced, String) {
    let mut best: Option<Price> = None;
    for t in instance_types {
        match prices.on_demand(t).await {
            Priced::Known(p) => {
                if best
                    .as_ref()
                    .is_none_or(|b| p.usd_per_hour > b.usd_per_hour)
                {
                    best = Some(p);
                }
            }
            unknown => return (unknown, t.clone()),
        }
    }
    match best {
        Some(p) => (Priced::Known(p), String::new()),
        None => (
            Priced::Unknown("no instance type to price".into()),
            String::new(),
        ),
    }
}

/// What a dry run says before any money is spent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    pub currency: &'static str,
    /// The price counted with, and where it came from.
    pub usd_per_hour: Option<f64>,
    pub price_source: Option<String>,
    /// Why there is no figure, when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown: Option<String>,
    /// Instances at once, each living until its deadline.
    pub instances: usize,
    /// Seconds each instance may live (its deadline after launch); None: no deadline.
    pub lifetime_s: Option<u64>,
    pub worst_case_usd: Option<f64>,
    /// From an earlier run's job times, for the jobs left.
    pub expected_usd: Option<f64>,
    pub expected_from: Option<String>,
    pub budget_usd: Option<f64>,
    /// `--detach` with a budget: the lifetime each instance gets so the worst case fits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detached_lifetime_s: Option<u64>,
}

impl Figures {
    pub fn new(
        price: &Priced,
        instances: usize,
        lifetime: Option<Duration>,
        budget: Option<&Budget>,
    ) -> Figures {
        let known = price.known();
        let rate = known.map(|p| p.usd_per_hour);
        Figures {
            currency: super::CURRENCY,
            usd_per_hour: rate,
            price_source: known.map(Price::provenance),
            unknown: match price {
                Priced::Unknown(why) => Some(why.clone()),
                Priced::Known(_) => None,
            },
            instances,
            lifetime_s: lifetime.map(|l| l.as_secs()),
            worst_case_usd: rate
                .zip(lifetime)
                .map(|(r, l)| budget::worst_case_usd(instances, l, r)),
            expected_usd: None,
            expected_from: None,
            budget_usd: budget.map(|b| b.max_usd),
            detached_lifetime_s: None,
        }
    }

    /// "# cost: worst case $9.41 (4 instances x 24h30m at $0.0960/h ...); expected ..."
    pub fn lines(&self) -> String {
        let mut o = String::new();
        match (self.worst_case_usd, self.lifetime_s) {
            (Some(w), Some(l)) => o.push_str(&format!(
                "# cost: worst case {} ({} instance{} x {} until the deadline at {}), what the deadlines guarantee even if this client dies\n",
                super::record::usd_text(Some(w)),
                self.instances,
                if self.instances == 1 { "" } else { "s" },
                crate::cmd::short_duration(Duration::from_secs(l)),
                self.price_source.as_deref().unwrap_or("?"),
            )),
            (_, None) => o.push_str("# cost: worst case unbounded (no deadline: --timeout none)\n"),
            (None, _) => o.push_str(&format!(
                "# cost: worst case unknown: {} (give --price USD_PER_HOUR)\n",
                self.unknown.as_deref().unwrap_or("no price")
            )),
        }
        match (&self.expected_usd, &self.expected_from) {
            (Some(e), Some(from)) => o.push_str(&format!(
                "# cost: expected {} ({from})\n",
                super::record::usd_text(Some(*e))
            )),
            _ => o.push_str("# cost: expected case unknown (no earlier run of these jobs on this workstation)\n"),
        }
        if let Some(b) = self.budget_usd {
            match self.detached_lifetime_s {
                Some(l) => o.push_str(&format!(
                    "# budget ${b:.2}: each instance powers itself off {} after launch (its timeout moved in), so the worst case stays within it\n",
                    crate::cmd::short_duration(Duration::from_secs(l))
                )),
                None => o.push_str(&format!(
                    "# budget ${b:.2}: nothing starts that would pass it\n"
                )),
            }
        }
        o
    }
}

/// The lifetime a plan gives its instance: launch to deadline.
pub fn lifetime(plan: &Plan, now: SystemTime) -> Option<Duration> {
    plan.deadline
        .map(|d| d.duration_since(now).unwrap_or_default())
}

/// Shorten a plan's instance lifetime to `lifetime`: the deadline moves in, and the job's
/// timeout with it, keeping the margin (so the job stops and saves its outputs before the
/// instance powers off).
pub fn cap_lifetime(plan: &mut Plan, lifetime: Duration, now: SystemTime) {
    let old = plan.deadline;
    let margin = match (old, plan.timeout) {
        (Some(d), Some(t)) => d.duration_since(now).unwrap_or_default().saturating_sub(t),
        _ => Duration::from_secs(30 * 60),
    };
    let deadline = now + lifetime;
    if old.is_some_and(|o| o <= deadline) {
        return;
    }
    plan.deadline = Some(deadline);
    let timeout = lifetime.saturating_sub(margin).max(Duration::from_secs(1));
    plan.timeout = Some(timeout);
    let stamp = humantime::format_rfc3339_seconds(deadline).to_string();
    plan.launch.tags.retain(|(k, _)| k != DEADLINE_TAG);
    plan.launch.tags.push((DEADLINE_TAG.to_string(), stamp));
    if let crate::plan::Work::Container(c) = &mut plan.work {
        let name = rtb_model::contract::TIMEOUT.name;
        c.env.retain(|(k, _)| k != name);
        c.env.push((
            name.to_string(),
            humantime::format_duration(timeout).to_string(),
        ));
    }
}

/// The margin a plan keeps between its timeout and its deadline: the least lifetime a
/// detached instance can be given.
pub fn margin(plan: &Plan, now: SystemTime) -> Duration {
    match (plan.deadline, plan.timeout) {
        (Some(d), Some(t)) => d.duration_since(now).unwrap_or_default().saturating_sub(t),
        _ => Duration::from_secs(30 * 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(extra: &[&str]) -> Plan {
        let mut v = vec![
            "run-render",
            "--ami",
            "ami-0123456789abcdef0",
            "--command",
            "x",
            "--output",
            "s3://b-1/x",
        ];
        v.extend_from_slice(extra);
        Plan::from_args(crate::cli::parse_run(v).unwrap(), SystemTime::now()).unwrap()
    }

    #[test]
    fn limits_from_flags_win_over_the_file() {
        let flags = |p: Option<&str>, m: Option<&str>| crate::cli::CostArgs {
            price: p.map(str::to_string),
            max_cost: m.map(str::to_string),
        };
        let file = crate::batch::file::Settings {
            price: Some(0.5),
            max_cost: Some(10.0),
            on_budget: Some("stop".into()),
            ..Default::default()
        };
        let l = Limits::settle(&flags(Some("0.25"), None), None, Some(&file)).unwrap();
        assert_eq!(l.price, Some(0.25));
        assert_eq!(
            l.budget,
            Some(Budget {
                max_usd: 10.0,
                on_budget: OnBudget::Stop
            })
        );
        let l = Limits::settle(&flags(None, Some("3")), Some("finish"), Some(&file)).unwrap();
        assert_eq!(
            (l.price, l.budget.map(|b| (b.max_usd, b.on_budget))),
            (Some(0.5), Some((3.0, OnBudget::Finish)))
        );
        assert!(Limits::settle(&flags(Some("free"), None), None, None)
            .unwrap_err()
            .starts_with("--price"));
        assert!(Limits::settle(&flags(None, Some("-2")), None, None)
            .unwrap_err()
            .starts_with("--max-cost"));
        assert!(Limits::settle(&flags(None, None), Some("stop"), None)
            .unwrap_err()
            .starts_with("--on-budget"));
        assert_eq!(
            Limits::settle(&flags(None, None), None, None).unwrap(),
            Limits::default()
        );
    }

    #[tokio::test]
    async fn a_budget_without_a_price_is_refused_in_one_line() {
        let prices = Prices::new(None, None, None);
        let e = budget_price(&prices, &["m6i.large".into()])
            .await
            .unwrap_err();
        assert!(
            e.starts_with("--max-cost: no price for m6i.large") && e.contains("--price"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        let prices = Prices::new(Some(0.2), None, None);
        let p = budget_price(&prices, &["m6i.large".into(), "m5.large".into()])
            .await
            .unwrap();
        assert_eq!(p.usd_per_hour, 0.2);
    }

    #[test]
    fn the_dry_run_figures() {
        let price = Priced::Known(Price {
            usd_per_hour: 0.096,
            market: super::super::prices::Market::OnDemand,
            instance_type: "m6i.large".into(),
            place: "us-east-1".into(),
            source: super::super::prices::Origin::PriceList,
            fetched_at: "2026-12-01T00:00:00Z".into(),
            cached: true,
        });
        let f = Figures::new(&price, 4, Some(Duration::from_secs(24 * 3600 + 1800)), None);
        assert!((f.worst_case_usd.unwrap() - 9.408).abs() < 1e-9);
        let text = f.lines();
        assert!(text.contains("worst case $9.4080 (4 instances x 1d00h until the deadline at $0.0960/h on-demand m6i.large"), "{text}");
        let f = Figures::new(
            &Priced::Unknown("no answer".into()),
            1,
            Some(Duration::from_secs(60)),
            None,
        );
        assert_eq!(f.worst_case_usd, None);
        assert!(f.lines().contains("worst case unknown: no answer"));
    }

    #[test]
    fn a_capped_lifetime_moves_the_deadline_and_the_timeout_in() {
        let now = SystemTime::now();
        let mut p = plan(&["--timeout", "6h", "--deadline-margin", "30m"]);
        cap_lifetime(&mut p, Duration::from_secs(3600), now);
        let left = p.deadline.unwrap().duration_since(now).unwrap().as_secs();
        assert!((3599..=3601).contains(&left), "{left}");
        let t = p.timeout.unwrap().as_secs();
        assert!((1799..=1801).contains(&t), "{t}");
        let tag = p
            .launch
            .tags
            .iter()
            .filter(|(k, _)| k == DEADLINE_TAG)
            .count();
        assert_eq!(tag, 1);
        let crate::plan::Work::Container(c) = &p.work else {
            panic!()
        };
        let env = c
            .env
            .iter()
            .filter(|(k, _)| k == "RTB_TIMEOUT")
            .collect::<Vec<_>>();
        assert_eq!(env.len(), 1);
        // A longer lifetime than the plan's changes nothing.
        let mut p = plan(&["--timeout", "1h"]);
        let before = p.deadline;
        cap_lifetime(&mut p, Duration::from_secs(10 * 3600), now);
        assert_eq!(p.deadline, before);
    }
}
