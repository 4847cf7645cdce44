//! A batch's cost, before and after: the dry run's worst and expected cases, the price a
//! budget needs (refused before launch without one), the lifetime of detached instances
//! under a budget, and the budget AWS Batch can be given.

use std::time::{Duration, SystemTime};

use super::before::{self, Figures, Limits};
use super::budget::{self, Spend};
use super::prices::{Cache, Prices};
use crate::batch::jobs::{BatchJob, Engine, Policy};
use crate::batch::pool::Pool;
use crate::cloud::Cloud;
use crate::registry::Registry;

/// The least a job needs beyond its margin when a budget shortens its instance's life.
pub const MIN_JOB: Duration = Duration::from_secs(60);

/// How many instances may run at once, and how long each may live.
fn exposure(policy: &Policy, jobs: &[BatchJob], detach: bool) -> (usize, Option<Duration>) {
    let now = SystemTime::now();
    let lifetime = jobs
        .iter()
        .map(|j| before::lifetime(&j.plan, now))
        .max()
        .flatten()
        .filter(|_| jobs.iter().all(|j| j.plan.deadline.is_some()));
    let instances = match policy.engine {
        // Every job at once, each until its own deadline.
        Engine::AwsBatch => jobs.len(),
        Engine::Ec2 if detach => jobs.len().div_ceil(policy.per_instance.max(1)),
        Engine::Ec2 => Pool::size(policy, jobs.len()),
    };
    (instances, lifetime)
}

/// A client for a dry run's price lookups (short patience), none with the user's price.
async fn price_cloud(jobs: &[BatchJob], user: Option<f64>) -> Option<Cloud> {
    if user.is_some() {
        return None;
    }
    let p = &jobs[0].plan;
    Some(
        Cloud::connect(&crate::cloud::Connect {
            region: p.region.clone(),
            profile: p.profile.clone(),
            endpoint_url: p.endpoint_url.clone(),
            call_limit: Some(Duration::from_secs(10)),
        })
        .await,
    )
}

/// The dry run's figures: the worst case (instances at once x their deadline x price) and
/// the expected case (an earlier run's median job time, from this workstation's cost
/// records, x the jobs that have not succeeded). Err: a budget refused.
pub async fn dry_run(
    policy: &Policy,
    jobs: &[BatchJob],
    limits: &Limits,
    detach: bool,
) -> Result<Figures, String> {
    let cloud = price_cloud(jobs, limits.price).await;
    let prices = Prices::new(limits.price, cloud.as_ref(), Some(Cache::open()));
    let (price, _) = before::plan_price(&prices, &jobs[0].plan.launch.instance_types).await;
    let (instances, lifetime) = exposure(policy, jobs, detach);
    let mut f = Figures::new(&price, instances, lifetime, limits.budget.as_ref());
    if let Some(rate) = price.known().map(|p| p.usd_per_hour) {
        let registry = Registry::open();
        let mut earlier = Vec::new();
        let mut left = 0;
        for j in jobs {
            let done = registry
                .get(&j.job_id)
                .and_then(|e| e.ended)
                .is_some_and(|e| e.outcome == "succeeded");
            if !done {
                left += 1;
            }
            if let Some(c) = registry.cost(&j.job_id).filter(|c| c.seconds > 0.0) {
                earlier.push(Duration::from_secs_f64(
                    c.seconds / c.attempts.len().max(1) as f64,
                ));
            }
        }
        if let Some(e) = budget::expected_usd(&earlier, left, 1, rate) {
            f.expected_usd = Some(e);
            f.expected_from = Some(format!(
                "median instance time of {} earlier job(s), {} each, x {left} job(s) not yet succeeded",
                earlier.len(),
                budget::median(&earlier)
                    .map(crate::cmd::short_duration)
                    .unwrap_or_default()
            ));
        }
    }
    if let Some(b) = &limits.budget {
        let Some(p) = price.known() else {
            return Err(format!(
                "--max-cost: no price ({}); a budget needs one: give --price USD_PER_HOUR",
                f.unknown.as_deref().unwrap_or("none found")
            ));
        };
        if detach || policy.engine == Engine::AwsBatch {
            let l = client_less(policy, jobs, p.usd_per_hour, b.max_usd, detach)?;
            if let Some(l) = l {
                f.detached_lifetime_s = Some(l.as_secs());
                f.lifetime_s = Some(l.as_secs());
                f.worst_case_usd = Some(budget::worst_case_usd(instances, l, p.usd_per_hour));
            }
        }
    }
    Ok(f)
}

/// Under a budget with nobody watching the spend (`--detach`): the shorter lifetime every
/// instance gets (EC2), None when the deadlines already fit, or why it cannot be done (AWS
/// Batch takes no shorter lifetime: its worst case must fit as it is). On AWS Batch with the
/// client following, the client keeps the budget (None).
pub fn client_less(
    policy: &Policy,
    jobs: &[BatchJob],
    rate: f64,
    max_usd: f64,
    detach: bool,
) -> Result<Option<Duration>, String> {
    let (instances, lifetime) = exposure(policy, jobs, detach);
    if policy.engine == Engine::AwsBatch && !detach {
        return Ok(None);
    }
    if policy.engine == Engine::AwsBatch {
        return match lifetime {
            Some(l) if budget::worst_case_usd(instances, l, rate) <= max_usd => Ok(None),
            _ => Err(format!(
                "--max-cost: with --detach nobody follows the spend on AWS Batch, so the worst case must already fit: {} job(s) x {} at ${rate:.4}/h is {}, over ${max_usd:.2}; follow the batch (no --detach), lower the rows' timeout, or run on the ec2 engine",
                instances,
                lifetime.map(crate::cmd::short_duration).unwrap_or_else(|| "no timeout".into()),
                lifetime
                    .map(|l| super::record::usd_text(Some(budget::worst_case_usd(instances, l, rate))))
                    .unwrap_or_else(|| "unbounded".into()),
            )),
        };
    }
    let now = SystemTime::now();
    let floor = jobs
        .iter()
        .map(|j| before::margin(&j.plan, now))
        .max()
        .unwrap_or_default()
        + MIN_JOB;
    budget::detached_lifetime(instances, lifetime, rate, max_usd, floor)
        .map_err(|e| format!("--max-cost: {e}"))
}

/// Before launch, a budget needs a price: the pool's [`Spend`], or one line refusing.
pub async fn spend(
    prices: &Prices<'_>,
    jobs: &[BatchJob],
    limits: &Limits,
) -> Result<Option<(Spend, f64)>, String> {
    let Some(b) = limits.budget else {
        return Ok(None);
    };
    let p = before::budget_price(prices, &jobs[0].plan.launch.instance_types).await?;
    let spend = Spend::new(b, p.usd_per_hour).expect(earlier_median(jobs));
    Ok(Some((spend, p.usd_per_hour)))
}

/// The median instance time per job of an earlier run of these jobs, from this
/// workstation's cost records.
fn earlier_median(jobs: &[BatchJob]) -> Option<Duration> {
    let registry = Registry::open();
    let times: Vec<Duration> = jobs
        .iter()
        .filter_map(|j| registry.cost(&j.job_id))
        .filter(|c| c.seconds > 0.0)
        .map(|c| Duration::from_secs_f64(c.seconds / c.attempts.len().max(1) as f64))
        .collect();
    budget::median(&times)
}
