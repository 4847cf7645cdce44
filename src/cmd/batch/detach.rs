//! `batch --detach` on the EC2 engine: every job as a detached `run`, all at once.

use crate::batch::jobs::BatchJob;
use crate::batch::pool::JobEnd;
use crate::batch::view::View;
use crate::cloud::Cloud;
use crate::cost;
use crate::lifecycle;
use crate::registry::Registry;
use crate::signals::Interrupts;
use crate::ui::Ui;

/// `--detach`: every job as a detached `run`, all at once.
#[allow(clippy::too_many_arguments)]
pub(super) async fn detached(
    name: &str,
    run_id: &str,
    jobs: &[BatchJob],
    run_list: &[usize],
    cloud: &Cloud,
    interrupts: &Interrupts,
    registry: &Registry,
    view: &View,
    log_dir: &std::path::Path,
    lifetime: Option<std::time::Duration>,
) -> (Vec<JobEnd>, crate::batch::pool::PoolStats) {
    let mut ends = vec![JobEnd::default(); jobs.len()];
    let reports = futures::future::join_all(run_list.iter().map(|&j| async move {
        let mut plan = jobs[j].plan_attempt(name, run_id, 1, false);
        plan.detach = true;
        if let Some(l) = lifetime {
            // Under a budget: the worst case of every instance together stays within it.
            cost::before::cap_lifetime(&mut plan, l, std::time::SystemTime::now());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_dir.join(format!("{}.log", jobs[j].job_id)))
            .ok();
        let ui = Ui::batch_job(view.multi(), view.screen(), &jobs[j].job_id, log);
        let r = lifecycle::run(&plan, cloud, &ui, interrupts, registry).await;
        ui.finish();
        (j, r)
    }))
    .await;
    let mut stats = crate::batch::pool::PoolStats::default();
    for (j, r) in reports {
        if r.instance_id.is_some() {
            stats.instances_launched += 1;
        }
        ends[j].attempts.push(crate::batch::pool::Attempt {
            outcome: r.outcome,
            exit_code: r.exit_code,
            instance_id: r.instance_id.clone(),
            spot: false,
            seconds: r.phases.total_s,
            error: r.error.clone(),
            retried_because: None,
            ran: crate::batch::pool::ran_until_now(r.phases.total_s),
            resume: Default::default(),
        });
        ends[j].report = Some(r);
    }
    stats.peak_instances = stats.instances_launched;
    (ends, stats)
}
