//! `cleanup`: terminate the tool's instances that should not be running: their job ended (its
//! result record exists), their deadline passed, or there is no record of a job and they are
//! older than a limit. Only instances carrying our tags, and by default only the caller's own
//! (`rtb:owner`). It says what it will do first; `--dry-run` only says, `--yes` does not ask.

use std::io::{BufRead, IsTerminal, Write};
use std::time::SystemTime;

use serde::Serialize;

use crate::cli::CleanupArgs;
use crate::cloud::{Cloud, Select, TaggedInstance};
use crate::engine::ec2::instance::Instance;
use crate::inventory::{pool, verdict, Candidate, Verdict};
use crate::registry::{self, Registry};
use crate::report::exit;

#[derive(Debug, Clone, Serialize)]
struct Line {
    instance_id: String,
    job_id: Option<String>,
    owner: Option<String>,
    state: String,
    terminate: bool,
    why: String,
    /// After the run: terminated, unconfirmed (with the error), or absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    ended: Option<String>,
}

pub fn main(args: CleanupArgs) -> i32 {
    super::block_on(run(args))
}

async fn run(args: CleanupArgs) -> i32 {
    let older_than = match humantime::parse_duration(&args.older_than) {
        Ok(d) => d,
        Err(e) => {
            return super::bad_input(
                &format!(
                    "--older-than: '{}' is not a duration ({e})",
                    args.older_than
                ),
                args.json,
            )
        }
    };
    let cloud = super::connect(&args.aws, None).await;
    let owner = crate::plan::owner();
    let instances = match cloud
        .tagged_instances(&Select {
            owner: (!args.all_owners).then_some(owner.as_str()),
            ..Select::default()
        })
        .await
    {
        Ok(i) => i,
        Err(e) => return super::fail(&e.to_string(), exit::REMOTE),
    };
    let registry = Registry::open();
    let now = SystemTime::now();
    let mut lines = Vec::new();
    for i in instances.iter().filter(|i| !i.state.is_gone()) {
        let (v, jobs) = match judge(&cloud, &registry, i, now, older_than).await {
            Ok(v) => v,
            Err(e) => (
                Verdict::Keep(format!("cannot read its records ({e})")),
                i.job_id.clone(),
            ),
        };
        let (terminate, why) = match v {
            Verdict::JobEnded => (true, "its job has ended".to_string()),
            Verdict::PastDeadline => (true, "its deadline has passed".to_string()),
            Verdict::NoJob => (
                true,
                format!(
                    "no record of a job, and older than {}",
                    humantime::format_duration(older_than)
                ),
            ),
            Verdict::Keep(why) => (false, why),
        };
        lines.push(Line {
            instance_id: i.id.clone(),
            job_id: jobs,
            owner: i.owner.clone(),
            state: i.state.name.to_string(),
            terminate,
            why,
            ended: None,
        });
    }
    let doomed = lines.iter().filter(|l| l.terminate).count();
    if !args.json {
        for l in &lines {
            crate::ui::stderr_line(&format!(
                "{} {} (job {}, owner {}, {}): {}",
                if l.terminate {
                    "terminate"
                } else {
                    "leave    "
                },
                l.instance_id,
                l.job_id.as_deref().unwrap_or("-"),
                l.owner.as_deref().unwrap_or("-"),
                l.state,
                l.why
            ));
        }
        if lines.is_empty() {
            crate::ui::stderr_line(&format!(
                "run-render: no running instances of ours{}",
                if args.all_owners {
                    String::new()
                } else {
                    format!(" owned by {owner}")
                }
            ));
        }
    }
    let finish = |lines: &[Line], code: i32| {
        if args.json {
            let doc = serde_json::json!({ "dry_run": args.dry_run, "instances": lines });
            super::emit(&format!(
                "{}\n",
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            ));
        }
        code
    };
    if args.dry_run || doomed == 0 {
        return finish(&lines, 0);
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return super::bad_input(
                "cleanup: stdin is not a terminal, so there is nobody to ask: add --yes to terminate without asking (or --dry-run to only list)",
                args.json,
            );
        }
        eprint!("Terminate {doomed} instance(s)? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            crate::ui::stderr_line("run-render: nothing terminated");
            return finish(&lines, 0);
        }
    }
    let ends = futures::future::join_all(lines.iter().filter(|l| l.terminate).map(|l| {
        let instance = Instance::adopt(&cloud, l.instance_id.clone());
        async move { (l.instance_id.clone(), instance.terminate().await) }
    }))
    .await;
    let mut unconfirmed = 0;
    for (id, end) in ends {
        let text = match end {
            Ok(_) => "terminated".to_string(),
            Err(e) => {
                unconfirmed += 1;
                format!("unconfirmed: {e}")
            }
        };
        if !args.json {
            crate::ui::stderr_line(&format!("run-render: {id} {text}"));
        }
        if let Some(l) = lines.iter_mut().find(|l| l.instance_id == id) {
            l.ended = Some(text);
        }
    }
    finish(
        &lines,
        if unconfirmed > 0 {
            exit::UNCONFIRMED
        } else {
            0
        },
    )
}

/// Fetch what the decision needs about one instance, then decide; and the job(s) it runs.
async fn judge(
    cloud: &Cloud,
    registry: &Registry,
    i: &TaggedInstance,
    now: SystemTime,
    older_than: std::time::Duration,
) -> Result<(Verdict, Option<String>), crate::cloud::CloudError> {
    if let Some(v) = crate::inventory::left_alone(i) {
        return Ok((v, i.job_id.clone()));
    }
    if i.pool.is_some() {
        // A batch pool's instance: its tags name no job; its records say which run on it.
        let seen = pool::fetch(cloud, i).await?;
        let client_alive = registry
            .recent(now, registry::RECENT)
            .iter()
            .any(|e| e.instance_id.as_deref() == Some(&i.id) && registry::client_alive(e));
        let jobs = Some(seen.job_ids().join(", ")).filter(|j| !j.is_empty());
        return Ok((pool::verdict(i, &seen, client_alive, now, older_than), jobs));
    }
    let records = i
        .records
        .as_deref()
        .and_then(|r| r.parse::<rtb_model::S3Url>().ok())
        .map(rtb_model::JobRecords::at);
    let (result, log_started) = match &records {
        Some(r) => {
            let result = cloud.job_result(r).await?.is_some();
            (result, result || cloud.log_started(r).await?)
        }
        None => (false, false),
    };
    let client_alive = i
        .job_id
        .as_deref()
        .and_then(|j| registry.get(j))
        .is_some_and(|e| e.instance_id.as_deref() == Some(&i.id) && registry::client_alive(&e));
    Ok((
        verdict(
            &Candidate {
                instance: i,
                result,
                log_started,
                client_alive,
            },
            now,
            older_than,
        ),
        i.job_id.clone(),
    ))
}
