use std::io::Write;
use std::time::SystemTime;

use run_render::cli::Args;
use run_render::cloud::{Cloud, Connect};
use run_render::plan::{Plan, Work};
use run_render::report::exit;
use run_render::signals::Interrupts;
use run_render::ui::Ui;
use run_render::{job, script};

fn main() {
    let args = Args::from_command_line();
    if args.print_policy {
        print!("{}", run_render::policies::text());
        return;
    }
    let json = args.json;
    let dry_run = args.dry_run;
    let plan = match Plan::from_args(args, SystemTime::now()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("run-render: {e}");
            if json {
                // Scripts get their one JSON document on every path.
                let doc = serde_json::json!({
                    "outcome": "bad_input",
                    "exit_code": exit::BAD_INPUT,
                    "instance": "not_launched",
                    "error": e.to_string(),
                });
                println!("{doc}");
            }
            std::process::exit(exit::BAD_INPUT);
        }
    };
    if dry_run {
        // No AWS call at all, not even to resolve the region.
        let region = plan
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok());
        print_dry_run(&plan, region.as_deref(), json);
        return;
    }
    let code = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(run(plan, json)),
        Err(e) => {
            eprintln!("run-render: cannot start the async runtime: {e}");
            exit::BAD_INPUT
        }
    };
    std::process::exit(code);
}

async fn run(plan: Plan, json: bool) -> i32 {
    let cloud = Cloud::connect(&Connect {
        region: plan.region.clone(),
        profile: plan.profile.clone(),
        endpoint_url: plan.endpoint_url.clone(),
    })
    .await;
    let interrupts = Interrupts::listen();
    let ui = Ui::new(json);
    let report = job::run(&plan, &cloud, &ui, &interrupts).await;
    ui.finish();
    if json {
        let _ = writeln!(std::io::stdout(), "{}", report.to_json());
    } else {
        let _ = write!(std::io::stderr(), "{report}");
    }
    report.exit_code
}

/// Everything that would be launched and run, and nothing launched.
fn print_dry_run(plan: &Plan, region: Option<&str>, json: bool) {
    let now = SystemTime::now();
    let script = script::job_script(plan, region, now);
    let user_data = script::user_data(plan, now);
    let l = &plan.launch;
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
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return;
    }
    println!("# run-render --dry-run: nothing is launched");
    println!(
        "# job {} in {}",
        plan.job_id,
        region.unwrap_or("(default region)")
    );
    println!("# RunInstances: {} from {}, 1 instance, profile {}, disk {}, IMDSv2 required, shutdown behaviour terminate",
        l.instance_types.join(" or "), l.ami, l.iam_profile,
        l.disk_gb.map(|g| format!("{g} GiB encrypted")).unwrap_or_else(|| "AMI size, encrypted".into()));
    if let Some(s) = &l.subnet {
        println!("#   subnet {s}");
    }
    if !l.security_groups.is_empty() {
        println!("#   security groups {}", l.security_groups.join(", "));
    }
    for (k, v) in &l.tags {
        println!("#   tag {k}={v}");
    }
    match plan.deadline {
        Some(d) => println!(
            "# the instance powers itself off at {} (timeout + margin), client or not",
            humantime::format_rfc3339_seconds(d)
        ),
        None => println!("# no deadline from run-render (--timeout none); the AMI's own maximum lifetime still applies"),
    }
    if let Work::Container(c) = &plan.work {
        if let Some(r) = &c.records {
            println!("# live log and result record: {r}", r = r.root());
        }
    }
    println!("# user data:");
    for line in user_data.unwrap_or_default().lines() {
        println!("#   {line}");
    }
    println!("# SSM AWS-RunShellScript script:");
    print!("{script}");
}
