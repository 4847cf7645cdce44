//! Opt-in smoke test on real AWS: one tiny job through the real client, AMI and image.
//! Ignored (reported as skipped) in ordinary runs; `.github/workflows/aws-smoke.yml` runs it
//! with `--ignored`, OIDC credentials, and:
//!   RUN_RENDER_SMOKE_AMI     the private AMI (ami-...)
//!   RUN_RENDER_SMOKE_OUTPUT  s3://bucket/prefix the instance role may write
//!   AWS_REGION               the AMI's region
//! Optional: RUN_RENDER_SMOKE_PROFILE (instance profile, default run-render-instance),
//! RUN_RENDER_SMOKE_INSTANCE_TYPE (default t3.large), RUN_RENDER_SMOKE_MATLAB_ROOT (MATLAB's
//! folder on the AMI, e.g. /usr/local/MATLAB/current; without it the job runs in Octave, which
//! the image has when built with EXTRA_APT_PACKAGES=octave).

use std::process::Command;

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: this test runs a real job on AWS (see the comment at the top of tests/aws_smoke.rs)")
    })
}

#[test]
#[ignore = "needs real AWS: RUN_RENDER_SMOKE_AMI, RUN_RENDER_SMOKE_OUTPUT and credentials"]
fn tiny_job_runs_on_aws_and_the_instance_is_terminated() {
    let ami = required("RUN_RENDER_SMOKE_AMI");
    let output = format!(
        "{}/smoke-{}",
        required("RUN_RENDER_SMOKE_OUTPUT").trim_end_matches('/'),
        std::process::id()
    );
    let profile =
        std::env::var("RUN_RENDER_SMOKE_PROFILE").unwrap_or_else(|_| "run-render-instance".into());
    let instance_type =
        std::env::var("RUN_RENDER_SMOKE_INSTANCE_TYPE").unwrap_or_else(|_| "t3.large".into());
    let interpreter = match std::env::var("RUN_RENDER_SMOKE_MATLAB_ROOT") {
        Ok(root) => vec!["--matlab-root".to_string(), root],
        Err(_) => vec!["--interpreter".to_string(), "octave".to_string()],
    };
    let out = Command::new(env!("CARGO_BIN_EXE_run-render"))
        .args([
            "--ami",
            &ami,
            "--iam-profile",
            &profile,
            "--instance-type",
            &instance_type,
            "--command",
            "disp(sprintf('smoke %d', 6*7))",
            "--output",
            &output,
            "--timeout",
            "20m",
            "--json",
        ])
        .args(&interpreter)
        .output()
        .expect("run run-render");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--json output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(report["instance"], "terminated", "{report:#}");
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["outcome"], "succeeded", "{report:#}");
    assert!(stderr.contains("smoke 42"), "the job's log was streamed");
}
