use super::*;

pub(super) fn plan(args: &[&str]) -> Result<Plan, PlanError> {
    let mut v = vec!["run-render", "--ami", "ami-0123456789abcdef0"];
    v.extend_from_slice(args);
    Plan::from_args(crate::cli::parse_run(v).unwrap(), SystemTime::now())
}

pub(super) fn err(args: &[&str]) -> String {
    plan(args).unwrap_err().to_string()
}

#[test]
fn refuses_bad_input_naming_the_flag() {
    assert!(err(&[]).starts_with("--command: is required"));
    assert!(err(&["--command", " "]).starts_with("--command: is empty"));
    assert!(err(&["--command", "x", "--output", "bucket/x"]).starts_with("--output: "));
    assert!(err(&["--command", "x", "--input", "s3://B/x"]).starts_with("--input: "));
    assert!(err(&["--command", "x", "--timeout", "later"]).starts_with("--timeout: "));
    // Huge durations are refused, not an overflow panic.
    assert!(err(&["--command", "x", "--timeout", "10000y"]).starts_with("--timeout: "));
    assert!(
        err(&["--command", "x", "--deadline-margin", "10000y"]).starts_with("--deadline-margin: ")
    );
    assert!(
        err(&["--command", "x", "--agent-timeout", "99999999999999d"])
            .starts_with("--agent-timeout: ")
    );
    assert!(err(&["--command", "x", "--instance-type", "big"]).starts_with("--instance-type"));
    assert!(err(&["--command", "x", "--disk-gb", "2"]).starts_with("--disk-gb"));
    assert!(err(&["--command", "x", "--tag", "rtb:tool=x"]).starts_with("--tag"));
    assert!(err(&["--command", "x", "--tag", "novalue"]).starts_with("--tag"));
    assert!(err(&["--command", "x", "--env", "COMMAND=y"]).starts_with("--env"));
    assert!(err(&["--command", "x", "--env", "AWS_SECRET_ACCESS_KEY=y"]).starts_with("--env"));
    assert!(
        err(&["--command", "x", "--env", "LOG_BUCKET=s3://x/y"]).starts_with("--env: LOG_BUCKET")
    );
    assert!(err(&["--command", "x", "--env", "RTB_RUN_ID=r1"]).starts_with("--env: RTB_RUN_ID"));
    assert!(err(&["--command", "x", "--volume", "relative:/x"]).starts_with("--volume"));
    assert!(err(&["--command", "x", "--job-id", "a b"]).starts_with("--job-id"));
    assert!(err(&["--command", "a\0b"]).starts_with("--command: contains a NUL"));
    let mut typed = crate::cli::parse_run([
        "run-render",
        "--ami",
        "ami-0123456789abcdef0",
        "--shell",
        "true",
        "--output",
        "s3://b-1/x",
    ])
    .unwrap();
    typed.explicit = vec!["ami".into(), "shell".into(), "output".into()];
    let e = Plan::from_args(typed, SystemTime::now())
        .unwrap_err()
        .to_string();
    assert!(e.contains("--output is for container jobs"), "{e}");
    let e = Plan::from_args(
        crate::cli::parse_run(["run-render", "--ami", "ami-xyz", "--command", "x"]).unwrap(),
        SystemTime::now(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("--ami: 'ami-xyz' is not an AMI id"), "{e}");
}

#[test]
fn container_env_follows_the_runner_contract() {
    let p = plan(&[
        "--command",
        "render('a')",
        "--toolboxes",
        "{'isetbio'}",
        "--output",
        "s3://out-bucket/run",
        "--matlab-root",
        "/usr/local/MATLAB/R2019b",
        "--env",
        "OUTPUT_SCRATCH=/home/ubuntu/work",
        "--job-id",
        "j1",
        "--timeout",
        "2h",
    ])
    .unwrap();
    let Work::Container(c) = &p.work else {
        panic!("container expected")
    };
    let get = |n: &str| c.env.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(get("COMMAND"), Some("render('a')"));
    assert_eq!(get("TOOLBOXES"), Some("{'isetbio'}"));
    assert_eq!(get("OUTPUT_BUCKET"), Some("s3://out-bucket/run"));
    assert_eq!(
        get("MATLAB_EXECUTABLE"),
        Some("/usr/local/MATLAB/from-host/bin/matlab")
    );
    assert_eq!(get("OUTPUT_SCRATCH"), Some("/home/ubuntu/work"));
    assert_eq!(get("RTB_JOB_ID"), Some("j1"));
    assert_eq!(get("RTB_TIMEOUT"), Some("2h"));
    assert_eq!(
        c.volumes[0],
        (
            "/usr/local/MATLAB/R2019b".into(),
            "/usr/local/MATLAB/from-host".into(),
            true
        )
    );
    assert_eq!(
        c.records.as_ref().unwrap().result_key(),
        "run/_rtb-job/j1/result.json"
    );
    assert!(p
        .launch
        .tags
        .contains(&("rtb:tool".into(), "run-render".into())));
    assert!(p.launch.tags.iter().any(|(k, _)| k == "rtb:deadline"));
    assert!(p.launch.client_token.starts_with("j1-"));
    assert!(p.launch.token(0).len() <= 64 && p.launch.token(0) != p.launch.token(1));
    assert_eq!(p.launch.instance_types, ["m6i.large"]);
}

#[test]
fn instance_type_lists_are_checked_and_kept_in_order() {
    let p = plan(&[
        "--shell",
        "true",
        "--instance-type",
        "g5.xlarge, g4dn.xlarge",
    ])
    .unwrap();
    assert_eq!(p.launch.instance_types, ["g5.xlarge", "g4dn.xlarge"]);
    assert!(
        err(&["--shell", "true", "--instance-type", "g5.xlarge,,"]).starts_with("--instance-type")
    );
}

#[test]
fn timeout_none_has_no_deadline() {
    let p = plan(&["--shell", "true", "--timeout", "none"]).unwrap();
    assert!(p.deadline.is_none() && p.timeout.is_none());
    assert!(!p.launch.tags.iter().any(|(k, _)| k == "rtb:deadline"));
}

#[test]
fn job_ids_are_valid_client_tokens() {
    let id = new_job_id(SystemTime::now());
    assert!(check_job_id(&id).is_ok(), "{id}");
    assert!(client_token(&id, SystemTime::now()).len() <= 64);
}
