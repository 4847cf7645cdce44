//! `run`: one job, attached (follow it to its end) or detached (`--detach`: leave once it
//! has started). Also `run --dry-run`: everything that would be launched, and nothing.

use std::io::Write;
use std::time::SystemTime;

use crate::cli::RunArgs;
use crate::cloud::Cloud;
use crate::cost::before::{self, Limits};
use crate::cost::budget;
use crate::cost::prices::{Cache, Priced, Prices};
use crate::engine::ec2::script;
use crate::lifecycle;
use crate::plan::{Plan, Work};
use crate::registry::Registry;
use crate::signals::Interrupts;
use crate::ui::Ui;

pub fn main(args: RunArgs) -> i32 {
    if args.print_policy {
        super::emit(&crate::policies::text());
        return 0;
    }
    let json = args.json;
    let dry_run = args.dry_run;
    let mut file_settings = None;
    let cost_flags = args.cost.clone();
    let args = match &args.file {
        None => args,
        // A job file: its [job] table, with the flags given here on top.
        Some(path) => {
            let loaded = crate::batch::BatchFile::load(path).and_then(|f| {
                file_settings = Some(f.settings.clone());
                crate::batch::jobs::single(&f, &args.given)
            });
            match loaded {
                Ok(mut from_file) => {
                    from_file.detach = args.detach;
                    from_file.dry_run = args.dry_run;
                    from_file.json = args.json;
                    from_file
                }
                Err(e) => return super::bad_input(&e.to_string(), json),
            }
        }
    };
    let limits = match Limits::settle(&cost_flags, None, file_settings.as_ref()) {
        Ok(l) => l,
        Err(e) => return super::bad_input(&e, json),
    };
    let plan = match Plan::from_args(args, SystemTime::now()) {
        Ok(p) => p,
        Err(e) => return super::bad_input(&e.to_string(), json),
    };
    if dry_run {
        return super::block_on(dry_run_main(plan, limits, json));
    }
    super::block_on(run(plan, limits, json))
}

/// `--dry-run`: nothing launched. The only AWS call is the price's (GetProducts, read-only),
/// and only when no `--price` is given and no fresh price is cached.
async fn dry_run_main(mut plan: Plan, limits: Limits, json: bool) -> i32 {
    let region = plan
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok());
    let cloud = price_cloud(&plan, region.as_deref(), limits.price).await;
    let prices = Prices::new(limits.price, cloud.as_ref(), Some(Cache::open()));
    let (price, _) = before::plan_price(&prices, &plan.launch.instance_types).await;
    let now = SystemTime::now();
    let mut figures = before::Figures::new(
        &price,
        1,
        before::lifetime(&plan, now),
        limits.budget.as_ref(),
    );
    if let (Some(b), Some(p)) = (limits.budget, price.known()) {
        match budget::detached_lifetime(
            1,
            before::lifetime(&plan, now),
            p.usd_per_hour,
            b.max_usd,
            before::margin(&plan, now) + MIN_JOB,
        ) {
            Ok(Some(l)) => {
                before::cap_lifetime(&mut plan, l, now);
                figures.detached_lifetime_s = Some(l.as_secs());
                figures.lifetime_s = Some(l.as_secs());
                figures.worst_case_usd = Some(budget::worst_case_usd(1, l, p.usd_per_hour));
            }
            Ok(None) => {}
            Err(e) => return super::bad_input(&format!("--max-cost: {e}"), json),
        }
    } else if limits.budget.is_some() {
        if let Priced::Unknown(why) = &price {
            return super::bad_input(
                &format!(
                    "--max-cost: no price ({why}); a budget needs one: give --price USD_PER_HOUR"
                ),
                json,
            );
        }
    }
    super::emit(&dry_run_text(&plan, region.as_deref(), json, &figures));
    0
}

/// A client for the price lookups of a dry run, with a short patience; none when the user's
/// price makes lookups needless.
async fn price_cloud(plan: &Plan, region: Option<&str>, user: Option<f64>) -> Option<Cloud> {
    if user.is_some() {
        return None;
    }
    Some(
        Cloud::connect(&crate::cloud::Connect {
            region: region.map(str::to_string),
            profile: plan.profile.clone(),
            endpoint_url: plan.endpoint_url.clone(),
            call_limit: Some(std::time::Duration::from_secs(10)),
        })
        .await,
    )
}

/// The least a job needs beyond its margin when a budget shortens its instance's life.
const MIN_JOB: std::time::Duration = std::time::Duration::from_secs(60);

async fn run(mut plan: Plan, limits: Limits, json: bool) -> i32 {
    let cloud = super::connect_for(&plan).await;
    let prices = Prices::new(limits.price, Some(&cloud), Some(Cache::open()));
    if let Some(b) = limits.budget {
        // Before launch: a budget needs a price, and the instance's deadline is set so the
        // worst case stays within it, client or not.
        let p = match before::budget_price(&prices, &plan.launch.instance_types).await {
            Ok(p) => p,
            Err(e) => return super::bad_input(&e, json),
        };
        let now = SystemTime::now();
        match budget::detached_lifetime(
            1,
            before::lifetime(&plan, now),
            p.usd_per_hour,
            b.max_usd,
            before::margin(&plan, now) + MIN_JOB,
        ) {
            Ok(None) => {}
            Ok(Some(l)) => {
                before::cap_lifetime(&mut plan, l, now);
                crate::ui::stderr_line(&format!(
                    "run-render: budget ${:.2} at {}: the instance powers itself off {} after launch (the job's timeout is {})",
                    b.max_usd,
                    p.provenance(),
                    super::short_duration(l),
                    plan.timeout.map(super::short_duration).unwrap_or_default()
                ));
            }
            Err(e) => return super::bad_input(&format!("--max-cost: {e}"), json),
        }
    }
    let interrupts = Interrupts::listen();
    let ui = Ui::new(json);
    let registry = Registry::open();
    let report = lifecycle::run(&plan, &cloud, &ui, &interrupts, &registry).await;
    ui.finish();
    let cost = tokio::time::timeout(
        crate::cost::account::COST_LIMIT,
        crate::cost::account::of_run(&cloud, &prices, &registry, &plan, &report),
    )
    .await
    .unwrap_or_else(|_| crate::cost::account::RunCost {
        note: Some(
            "AWS did not answer in time for the cost; `run-render status` shows it later".into(),
        ),
        ..Default::default()
    });
    if json {
        let mut doc = serde_json::to_value(&report).unwrap_or_default();
        cost.add_to(&mut doc);
        let _ = writeln!(
            std::io::stdout(),
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
    } else {
        let _ = write!(std::io::stderr(), "{report}");
        let _ = writeln!(std::io::stderr(), "  cost:     {}", cost.line());
    }
    report.exit_code
}

/// Everything that would be launched and run, and nothing launched.
pub fn print_dry_run(plan: &Plan, region: Option<&str>, json: bool, figures: &before::Figures) {
    super::emit(&dry_run_text(plan, region, json, figures));
}

fn dry_run_text(
    plan: &Plan,
    region: Option<&str>,
    json: bool,
    figures: &before::Figures,
) -> String {
    use std::fmt::Write as _;
    let script = script::job_script(plan, region);
    let user_data = script::user_data(plan);
    let l = &plan.launch;
    let mut o = String::new();
    if json {
        let doc = serde_json::json!({
            "dry_run": true,
            "job_id": plan.job_id,
            "region": region,
            "launch": {
                "ami": l.ami,
                "instance_types": l.instance_types,
                "disk_gb": l.disk_gb,
                "subnet": l.subnet,
                "security_groups": l.security_groups,
                "iam_profile": l.iam_profile,
                "tags": l.tags.iter().map(|(k, v)| serde_json::json!({"key": k, "value": v})).collect::<Vec<_>>(),
                "client_token": l.client_token,
                "metadata": "IMDSv2 required, hop limit 1",
                "shutdown_behavior": "terminate",
                "root_volume": "encrypted gp3, deleted on termination",
            },
            "user_data": user_data,
            "script": script,
            "deadline": plan.deadline.map(|d| humantime::format_rfc3339_seconds(d).to_string()),
            "cost": figures,
        });
        let _ = writeln!(
            o,
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        );
        return o;
    }
    let _ = writeln!(o, "# run-render --dry-run: nothing is launched");
    let _ = writeln!(
        o,
        "# job {} in {}",
        plan.job_id,
        region.unwrap_or("(default region)")
    );
    let _ = writeln!(o, "# RunInstances: {} from {}, 1 instance, profile {}, disk {}, IMDSv2 required, shutdown behaviour terminate",
        l.instance_types.join(" or "), l.ami, l.iam_profile,
        l.disk_gb.map(|g| format!("{g} GiB encrypted")).unwrap_or_else(|| "AMI size, encrypted".into()));
    if let Some(s) = &l.subnet {
        let _ = writeln!(o, "#   subnet {s}");
    }
    if !l.security_groups.is_empty() {
        let _ = writeln!(o, "#   security groups {}", l.security_groups.join(", "));
    }
    for (k, v) in &l.tags {
        let _ = writeln!(o, "#   tag {k}={v}");
    }
    let _ = match plan.deadline {
        Some(d) => writeln!(o,
            "# the instance powers itself off at {} (timeout + margin), client or not",
            humantime::format_rfc3339_seconds(d)
        ),
        None => writeln!(o, "# no deadline from run-render (--timeout none); the AMI's own maximum lifetime still applies"),
    };
    o.push_str(&figures.lines());
    if let Work::Container(c) = &plan.work {
        if let Some(r) = &c.records {
            let _ = writeln!(o, "# live log and result record: {r}", r = r.root());
        }
    }
    let _ = writeln!(o, "# user data:");
    for line in user_data.unwrap_or_default().lines() {
        let _ = writeln!(o, "#   {line}");
    }
    let _ = writeln!(o, "# SSM AWS-RunShellScript script:");
    o.push_str(&script);
    o
}
