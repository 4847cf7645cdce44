//! `aws-batch setup|teardown`: what an AWS Batch queue needs (a managed EC2 compute
//! environment from the lab's AMI, the job queue, the IAM roles of `ami/iam/`), made or
//! removed idempotently. `--dry-run` prints the steps and changes nothing.

use crate::cli::{AwsBatchCmd, AwsBatchSetupArgs};
use crate::engine::aws_batch::{AwsBatch, SetupSpec};
use crate::report::exit;

pub fn main(cmd: AwsBatchCmd) -> i32 {
    let (teardown, args) = match cmd {
        AwsBatchCmd::Setup(a) => (false, a),
        AwsBatchCmd::Teardown(a) => (true, a),
    };
    if let Some(ami) = &args.ami {
        if !ami.starts_with("ami-") {
            return super::bad_input(
                &format!("--ami: '{ami}' is not an AMI id (ami-...)"),
                args.json,
            );
        }
    }
    if args.max_vcpus == 0 {
        return super::bad_input("--max-vcpus: must be at least 1", args.json);
    }
    super::block_on(run(teardown, args))
}

fn spec(a: &AwsBatchSetupArgs) -> SetupSpec {
    SetupSpec {
        queue: a.queue.clone(),
        ami: a.ami.clone(),
        instance_types: a.instance_type.clone(),
        max_vcpus: a.max_vcpus,
        spot: a.spot,
        allocation_strategy: a.allocation_strategy.clone(),
        subnets: a.subnets.clone(),
        security_groups: a.security_groups.clone(),
        input_buckets: a.input_buckets.clone(),
        output_buckets: a.output_buckets.clone(),
    }
}

async fn run(teardown: bool, args: AwsBatchSetupArgs) -> i32 {
    let cloud = super::connect(&args.aws, None).await;
    let engine = AwsBatch::new(cloud.config(), &crate::plan::owner());
    let spec = spec(&args);
    let done = if teardown {
        engine.teardown(&spec, args.dry_run).await
    } else {
        engine.setup(&spec, args.dry_run).await
    };
    let steps = match done {
        Ok(s) => s,
        Err(e) => {
            return super::fail(
                &format!(
                    "aws-batch {}: {e}",
                    if teardown { "teardown" } else { "setup" }
                ),
                exit::REMOTE,
            )
        }
    };
    let verb = if args.dry_run { "would" } else { "did" };
    if args.json {
        super::emit(&format!(
            "{}\n",
            serde_json::json!({
                "queue": spec.queue,
                "dry_run": args.dry_run,
                "steps": steps.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            })
        ));
    } else if steps.is_empty() {
        crate::ui::stderr_line(&format!(
            "run-render: queue {}: nothing to do ({})",
            spec.queue,
            if teardown {
                "nothing of it exists"
            } else {
                "everything exists as asked"
            }
        ));
    } else {
        for s in &steps {
            crate::ui::stderr_line(&format!("run-render: {verb}: {s}"));
        }
    }
    0
}
