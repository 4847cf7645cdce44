//! `list`: the tool's own instances (tag rtb:tool), by default only the caller's (rtb:owner),
//! each with the job it runs now: a batch pool's instance from the pool's records (its tags,
//! set at launch, name no job).

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::cli::ListArgs;
use crate::cloud::{Select, TaggedInstance};
use crate::report::exit;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub instance_id: String,
    /// The job it runs now (the first, when a pool instance runs several).
    pub job_id: Option<String>,
    /// Every job it runs now.
    pub jobs: Vec<String>,
    pub owner: Option<String>,
    pub state: String,
    pub age_s: Option<u64>,
    /// Seconds until its deadline ends it; negative once it is past.
    pub deadline_in_s: Option<i64>,
    pub instance_type: String,
    pub batch: Option<String>,
    /// The service that manages it (an AWS Batch compute environment's instance).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
}

pub fn main(args: ListArgs) -> i32 {
    super::block_on(async move {
        let cloud = super::connect(&args.aws, None).await;
        let owner = crate::plan::owner();
        let found = cloud
            .tagged_instances(&Select {
                owner: (!args.all_owners).then_some(owner.as_str()),
                ..Select::default()
            })
            .await;
        let instances = match found {
            Ok(i) => i,
            Err(e) => return super::fail(&e.to_string(), exit::REMOTE),
        };
        let now = SystemTime::now();
        let mut rows: Vec<Row> = Vec::new();
        for i in instances
            .iter()
            .filter(|i| i.state.name != crate::cloud::Lifecycle::Terminated)
        {
            let mut r = row(i, now);
            if i.pool.is_some() && !i.state.is_gone() {
                match crate::inventory::pool::fetch(&cloud, i).await {
                    Ok(seen) => {
                        r.jobs = seen.job_ids();
                        r.job_id = r.jobs.first().cloned();
                        if let Some(d) = seen.deadline() {
                            r.deadline_in_s = Some(seconds_until(d, now));
                        }
                    }
                    Err(e) => crate::ui::stderr_line(&format!(
                        "run-render: {}: cannot read its batch's records ({e})",
                        i.id
                    )),
                }
            }
            rows.push(r);
        }
        if args.json {
            super::emit(&format!(
                "{}\n",
                serde_json::to_string_pretty(&rows).unwrap_or_default()
            ));
        } else if rows.is_empty() {
            crate::ui::stderr_line(&format!(
                "run-render: no instances of ours{}",
                if args.all_owners {
                    String::new()
                } else {
                    format!(" owned by {owner} (--all-owners for everyone's)")
                }
            ));
        } else {
            super::emit(&table(&rows));
        }
        0
    })
}

pub fn row(i: &TaggedInstance, now: SystemTime) -> Row {
    Row {
        instance_id: i.id.clone(),
        job_id: i.job_id.clone(),
        jobs: i.job_id.iter().cloned().collect(),
        owner: i.owner.clone(),
        state: i.state.name.to_string(),
        age_s: i
            .launched
            .and_then(|t| now.duration_since(t).ok())
            .map(|d| d.as_secs()),
        deadline_in_s: i.deadline.map(|d| seconds_until(d, now)),
        instance_type: i.instance_type.clone(),
        batch: i.batch.clone(),
        managed_by: i.managed_by.clone(),
    }
}

/// Seconds from `now` to `t`; negative once it is past.
fn seconds_until(t: SystemTime, now: SystemTime) -> i64 {
    match t.duration_since(now) {
        Ok(left) => left.as_secs() as i64,
        Err(past) => -(past.duration().as_secs() as i64),
    }
}

fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<21} {:<28} {:<12} {:<13} {:>8} {:>10}  {}\n",
        "INSTANCE", "JOB", "OWNER", "STATE", "AGE", "DEADLINE", "TYPE"
    );
    for r in rows {
        let left = match r.deadline_in_s {
            Some(s) if s >= 0 => super::short_duration(Duration::from_secs(s as u64)),
            Some(s) => format!(
                "-{}",
                super::short_duration(Duration::from_secs((-s) as u64))
            ),
            None => "none".into(),
        };
        out.push_str(&format!(
            "{:<21} {:<28} {:<12} {:<13} {:>8} {:>10}  {}\n",
            r.instance_id,
            match (&r.job_id, &r.managed_by) {
                (Some(_), _) => r.jobs.join(","),
                (None, Some(m)) => format!("({m})"),
                (None, None) => "-".into(),
            },
            r.owner.as_deref().unwrap_or("-"),
            r.state,
            r.age_s
                .map(|a| super::short_duration(Duration::from_secs(a)))
                .unwrap_or_else(|| "-".into()),
            left,
            r.instance_type
        ));
    }
    out
}
