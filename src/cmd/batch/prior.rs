//! What an earlier run of the batch left decides which jobs this run runs: jobs that
//! succeeded are kept under --resume (unless their row changed), a live earlier run is
//! refused, and the instances of a finished one are ended before their jobs run again.

use crate::batch::earlier;
use crate::batch::jobs::BatchJob;
use crate::cli::BatchArgs;
use crate::cloud::Cloud;
use crate::engine::ec2::instance::Instance;
use crate::registry::Registry;
use crate::report::exit;

/// `Ok((the jobs to run, why each other job is not run))`, or the exit code when this run must
/// not start (or has nothing to do: 0).
pub(super) async fn jobs_to_run(
    cloud: &Cloud,
    registry: &Registry,
    name: &str,
    jobs: &[BatchJob],
    ec2: bool,
    args: &BatchArgs,
) -> Result<(Vec<usize>, Vec<Option<String>>), i32> {
    let json = args.run.json;
    // What an earlier run of this batch left: results, and instances still running.
    let earlier = match earlier::earlier_run(cloud, registry, name, jobs, ec2).await {
        Ok(e) => e,
        Err(e) => {
            return Err(crate::cmd::fail(
                &format!("batch {name}: {e}"),
                exit::PREFLIGHT,
            ))
        }
    };
    // Its instances are ended below only when their run is over: a run alive in another
    // terminal, or perhaps elsewhere, keeps them, and this one does not start.
    if let Some(line) = earlier::refusal(name, &earlier.instances) {
        return Err(crate::cmd::bad_input(&line, json));
    }
    if (!earlier.results.is_empty() || !earlier.instances.is_empty()) && !args.resume && !args.rerun
    {
        let mut named: Vec<&str> = earlier
            .results
            .iter()
            .map(|(j, _)| jobs[*j].job_id.as_str())
            .collect();
        let more = named.len().saturating_sub(5);
        named.truncate(5);
        let what = if earlier.results.is_empty() {
            format!(
                "{} instance(s) of an earlier run are still running",
                earlier.instances.len()
            )
        } else {
            format!(
                "{} of {} jobs already have results ({}{})",
                earlier.results.len(),
                jobs.len(),
                named.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            )
        };
        return Err(crate::cmd::bad_input(
            &format!("batch {name}: {what}; --resume runs only the jobs that have not succeeded, --rerun runs every job again"),
            json,
        ));
    }
    if !earlier.instances.is_empty() {
        // Their client is gone; their jobs are run again here, so they must not write on.
        for (id, _) in &earlier.instances {
            crate::ui::stderr_line(&format!(
                "run-render: batch {name}: {id} of an earlier run is still running: terminating it (its job is run again)"
            ));
        }
        let ends = futures::future::join_all(
            earlier
                .instances
                .iter()
                .map(|(id, _)| Instance::adopt(cloud, id.clone()).terminate()),
        )
        .await;
        if let Some(e) = ends.into_iter().find_map(Result::err) {
            return Err(crate::cmd::fail(&e.to_string(), exit::UNCONFIRMED));
        }
    }
    let mut ends_before: Vec<Option<String>> = vec![None; jobs.len()];
    let run_list: Vec<usize> = (0..jobs.len())
        .filter(|j| {
            let Some((_, done)) = earlier.results.iter().find(|(k, _)| k == j) else {
                return true;
            };
            if !args.resume || !done.succeeded {
                return true;
            }
            if !done.changed.is_empty() {
                // Same job id, another row (a row inserted above it, or edited).
                crate::ui::stderr_line(&format!(
                    "run-render: batch {name}: {} (row {}) succeeded in an earlier run, but its row has changed since ({}): running it again",
                    jobs[*j].job_id,
                    jobs[*j].row.number,
                    done.changed.join(", ")
                ));
                return true;
            }
            ends_before[*j] = Some("succeeded in an earlier run (--resume)".into());
            false
        })
        .collect();
    if run_list.is_empty() {
        crate::ui::stderr_line(&format!(
            "run-render: batch {name}: every job has succeeded already; nothing to run"
        ));
        return Err(0);
    }

    Ok((run_list, ends_before))
}
