//! `run`: one job, attached (follow it to its end) or detached (`--detach`: leave once it
//! has started). Also `run --dry-run`: everything that would be launched, and nothing.

use std::io::Write;
use std::time::SystemTime;

use crate::cli::RunArgs;
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
    let args = match &args.file {
        None => args,
        // A job file: its [job] table, with the flags given here on top.
        Some(path) => {
            let loaded = crate::batch::BatchFile::load(path)
                .and_then(|f| crate::batch::jobs::single(&f, &args.given));
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
    let plan = match Plan::from_args(args, SystemTime::now()) {
        Ok(p) => p,
        Err(e) => return super::bad_input(&e.to_string(), json),
    };
    if dry_run {
        // No AWS call at all, not even to resolve the region.
        let region = plan
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok());
        print_dry_run(&plan, region.as_deref(), json);
        return 0;
    }
    super::block_on(run(plan, json))
}

async fn run(plan: Plan, json: bool) -> i32 {
    let cloud = super::connect_for(&plan).await;
    let interrupts = Interrupts::listen();
    let ui = Ui::new(json);
    let report = lifecycle::run(&plan, &cloud, &ui, &interrupts, &Registry::open()).await;
    ui.finish();
    if json {
        let _ = writeln!(std::io::stdout(), "{}", report.to_json());
    } else {
        let _ = write!(std::io::stderr(), "{report}");
    }
    report.exit_code
}

/// Everything that would be launched and run, and nothing launched.
pub fn print_dry_run(plan: &Plan, region: Option<&str>, json: bool) {
    super::emit(&dry_run_text(plan, region, json));
}

fn dry_run_text(plan: &Plan, region: Option<&str>, json: bool) -> String {
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
