//! `batch --dry-run`: every expanded job and the cost figures, as text or JSON.

use crate::batch::jobs::{BatchJob, Engine, Policy};
use crate::batch::pool::Pool;
use crate::batch::BatchFile;
use crate::cost;

pub(super) fn dry_run(
    file: &BatchFile,
    policy: &Policy,
    jobs: &[BatchJob],
    json: bool,
    figures: &cost::before::Figures,
) -> String {
    let instances = Pool::size(policy, jobs.len());
    if json {
        let doc = serde_json::json!({
            "dry_run": true,
            "batch": {
                "name": file.name,
                "engine": match policy.engine { Engine::Ec2 => "ec2", Engine::AwsBatch => "aws-batch" },
                "parallel": policy.parallel,
                "per_instance": policy.per_instance,
                "retries": policy.retries,
                "retry_on_job_error": policy.retry_on_job_error,
                "spot": policy.spot,
                "instances": instances,
            },
            "cost": figures,
            "jobs": jobs.iter().map(|j| serde_json::json!({
                "job_id": j.job_id,
                "name": j.name,
                "row": j.row.number,
                "output": j.plan.output.as_ref().map(|o| o.to_string()),
                "command": j.setting("COMMAND"),
                "startup": j.setting("STARTUP"),
                "toolboxes": j.setting("TOOLBOXES"),
                "settings": j.settings(),
            })).collect::<Vec<_>>(),
        });
        return format!(
            "{}\n",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
    }
    let mut o = format!(
        "# run-render batch --dry-run: nothing is launched\n# batch {}: {} jobs, parallel {}, {} per instance, at most {} instance(s) of {} from {}, retries {}\n",
        file.name,
        jobs.len(),
        policy.parallel,
        policy.per_instance,
        instances,
        jobs[0].plan.launch.instance_types.join(" or "),
        jobs[0].plan.launch.ami,
        policy.retries,
    );
    o.push_str(&figures.lines());
    for j in jobs {
        o.push_str(&format!(
            "\n{}  (row {}, instance name {})\n  output:    {}\n",
            j.job_id,
            j.row.number,
            j.name,
            j.plan
                .output
                .as_ref()
                .map(|o| o.to_string())
                .unwrap_or_default()
        ));
        for (k, v) in j.settings() {
            o.push_str(&format!("  {k}={v}\n"));
        }
    }
    o
}
