//! The settings check, table by table: every refusal names its setting.

use super::*;

fn args(extra: &[&str]) -> Args {
    let dir = std::env::temp_dir().join(format!("rtb-settings-{}", std::process::id()));
    let mut v = vec![
        "rtb-job".to_string(),
        "--interpreter".into(),
        "octave-cli".into(),
    ];
    for (flag, sub) in [("--input-scratch", "in"), ("--output-scratch", "out")] {
        if !extra.contains(&flag) {
            v.extend([flag.to_string(), dir.join(sub).display().to_string()]);
        }
    }
    v.extend(extra.iter().map(|s| s.to_string()));
    Args::try_parse_from(v).unwrap()
}

fn error_of(extra: &[&str]) -> String {
    args(extra)
        .check(std::time::SystemTime::now())
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_values_name_their_setting() {
    assert!(error_of(&["--input-bucket", "bucket/x"]).starts_with("INPUT_BUCKET: "));
    assert!(error_of(&["--output-bucket", "s3://"]).starts_with("OUTPUT_BUCKET: "));
    assert!(error_of(&["--timeout", "soon"]).starts_with("RTB_TIMEOUT: "));
    assert!(error_of(&["--matlab-style", "x"]).starts_with("MATLAB_STYLE: "));
    let e = error_of(&["--input-bucket", "s3://bkt/x", "--input-flags", "--sse"]);
    assert!(e.starts_with("INPUT_FLAGS: ") && e.contains("--sse"), "{e}");
    assert!(error_of(&["--job-id", "a/b"]).starts_with("RTB_JOB_ID: "));
    let e = error_of(&[
        "--output-bucket",
        "s3://bkt/x",
        "--output-flags",
        "--exclude",
    ]);
    assert!(e.starts_with("OUTPUT_FLAGS: "), "{e}");
}

#[test]
fn unknown_interpreter_is_refused() {
    let dir = std::env::temp_dir();
    let e = Args::try_parse_from([
        "rtb-job",
        "--interpreter",
        "python3",
        "--output-scratch",
        dir.to_str().unwrap(),
        "--input-scratch",
        dir.to_str().unwrap(),
    ])
    .unwrap()
    .check(std::time::SystemTime::now())
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("MATLAB_EXECUTABLE: "), "{e}");
}

#[test]
fn unwritable_scratch_is_refused() {
    let e = error_of(&["--output-scratch", "/proc/rtb-job-cannot-exist"]);
    assert!(e.starts_with("OUTPUT_SCRATCH: cannot create"), "{e}");
}

#[test]
fn empty_values_mean_defaults_as_in_the_original() {
    let s = args(&[
        "--output-bucket",
        "s3://bkt/run",
        "--output-flags",
        " ",
        "--input-flags",
        "",
    ])
    .check(std::time::SystemTime::now())
    .unwrap();
    assert!(s.output.unwrap().options.recursive);
    let mut a =
        Args::try_parse_from(["rtb-job", "--output-scratch", "", "--interpreter", ""]).unwrap();
    a.empty_means_default();
    assert_eq!(a.interpreter, "matlab");
    assert_eq!(a.output_scratch, PathBuf::from("/output-scratch"));
}

#[test]
fn help_lists_the_contract_and_every_exit_code() {
    let help = command().render_long_help().to_string();
    for var in contract::ALL {
        assert!(help.contains(&format!("env: {}", var.name)), "{}", var.name);
        assert!(help.contains(var.help), "{}", var.name);
    }
    for (code, meaning) in exit::TABLE {
        let line = if *code == exit::SIGNAL_BASE {
            "128+N  stopped by signal N".to_string()
        } else {
            format!("{code:<6} {meaning}")
        };
        assert!(help.contains(&line), "{line}\n{help}");
    }
    assert!(help.contains("[default: /output-scratch]"), "{help}");
}

#[test]
fn records_default_under_output() {
    let s = args(&["--output-bucket", "s3://bkt/run", "--job-id", "j1"])
        .check(std::time::SystemTime::now())
        .unwrap();
    let r = s.records.unwrap();
    assert_eq!(r.result_key(), "run/_rtb-job/j1/result.json");
    assert_eq!(s.toolboxes, "''");
    assert_eq!(s.command, "ver");
}

#[test]
fn checkpoint_and_resume_settings() {
    let ok = |extra: &[&str]| {
        args(extra)
            .check(std::time::SystemTime::now())
            .unwrap_or_else(|e| panic!("{extra:?}: {e}"))
    };
    // Off by default: no checkpoints, no watching, no attempt, no resume.
    let s = ok(&["--output-bucket", "s3://bkt/run"]);
    assert_eq!(s.checkpoint_every, None);
    assert!(!s.watch_notices);
    assert_eq!((s.attempt, s.attempt_number()), (1, 1));
    assert_eq!(s.resume_from, None);

    let s = ok(&[
        "--output-bucket",
        "s3://bkt/run",
        "--checkpoint-every",
        "15m",
    ]);
    assert_eq!(s.checkpoint_every, Some(Duration::from_secs(900)));
    assert!(s.watch_notices, "checkpoints watch the notice by default");
    let s = ok(&[
        "--output-bucket",
        "s3://bkt/run",
        "--checkpoint-every",
        "15m",
        "--watch-notices",
        "off",
    ]);
    assert!(!s.watch_notices);
    assert!(ok(&["--watch-notices", "on"]).watch_notices);

    let s = ok(&["--attempt", "3"]);
    assert_eq!(s.attempt, 3);
    let s = ok(&["--aws-batch-job-attempt", "2"]);
    assert_eq!(s.attempt, 2, "AWS Batch's number is the default");
    let s = ok(&["--aws-batch-job-attempt", "2", "--attempt", "5"]);
    assert_eq!(s.attempt, 5, "RTB_ATTEMPT wins");

    let s = ok(&[
        "--output-bucket",
        "s3://bkt/run",
        "--job-id",
        "j2",
        "--resume-from",
        "s3://bkt/run/_rtb-job/j1",
    ]);
    match s.resume_from {
        Some(ResumeFrom::Records(r)) => {
            assert_eq!(r.root().to_string(), "s3://bkt/run/_rtb-job/j1/")
        }
        other => panic!("{other:?}"),
    }
    let s = ok(&[
        "--log-bucket",
        "s3://bkt/run/_rtb-job/j1/r1-a2",
        "--resume-from",
        "previous",
    ]);
    assert_eq!(s.resume_from, Some(ResumeFrom::Previous));
}

#[test]
fn bad_checkpoint_and_resume_settings_name_themselves() {
    let table: &[(&[&str], &str)] = &[
        (
            &[
                "--output-bucket",
                "s3://bkt/r",
                "--checkpoint-every",
                "often",
            ],
            "RTB_CHECKPOINT_EVERY: 'often' is not a duration",
        ),
        (
            &[
                "--output-bucket",
                "s3://bkt/r",
                "--checkpoint-every",
                "500ms",
            ],
            "RTB_CHECKPOINT_EVERY: must be at least 1s",
        ),
        (
            &["--checkpoint-every", "15m"],
            "RTB_CHECKPOINT_EVERY: checkpoints save OUTPUT_SCRATCH",
        ),
        (
            &["--watch-notices", "maybe"],
            "RTB_WATCH_NOTICES: 'maybe' is not on or off",
        ),
        (
            &["--attempt", "0"],
            "RTB_ATTEMPT: '0' is not an attempt number",
        ),
        (
            &["--attempt", "two"],
            "RTB_ATTEMPT: 'two' is not an attempt number",
        ),
        (
            &["--aws-batch-job-attempt", "x"],
            "AWS_BATCH_JOB_ATTEMPT: 'x' is not",
        ),
        (
            &["--resume-from", "bucket/x"],
            "RTB_RESUME_FROM: 'bucket/x' is not an S3 URL",
        ),
        (
            &[
                "--output-bucket",
                "s3://bkt/r",
                "--job-id",
                "j1",
                "--resume-from",
                "s3://bkt/r/_rtb-job/j1/",
            ],
            "RTB_RESUME_FROM: names this attempt's own records",
        ),
        (
            &[
                "--output-bucket",
                "s3://bkt/r",
                "--job-id",
                "j1",
                "--resume-from",
                "previous",
            ],
            "RTB_RESUME_FROM: 'previous' finds earlier attempts",
        ),
        (
            &["--resume-from", "previous"],
            "not set (no OUTPUT_BUCKET or LOG_BUCKET)",
        ),
    ];
    for (extra, want) in table {
        let e = error_of(extra);
        assert!(e.contains(want), "{extra:?}: {e}");
    }
}

#[test]
fn scratch_is_emptied_only_when_asked() {
    let d = tempfile::tempdir().unwrap();
    let (inp, out) = (d.path().join("in"), d.path().join("out"));
    let flags = |empty: Option<&str>| {
        let mut v = vec![
            "--input-scratch".to_string(),
            inp.display().to_string(),
            "--output-scratch".to_string(),
            out.display().to_string(),
        ];
        if let Some(e) = empty {
            v.extend(["--empty-scratch".to_string(), e.to_string()]);
        }
        v
    };
    let check = |extra: Vec<String>| {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        args(&extra).check(std::time::SystemTime::now())
    };
    for dir in [&inp, &out] {
        std::fs::create_dir_all(dir.join("old")).unwrap();
        std::fs::write(dir.join("old/frame.exr"), "left by job 1").unwrap();
    }
    let s = check(flags(None)).unwrap();
    assert!(s.emptied.is_empty());
    assert!(
        out.join("old/frame.exr").exists(),
        "not asked: nothing goes"
    );
    let s = check(flags(Some("1"))).unwrap();
    assert_eq!(s.emptied.len(), 2);
    assert!(s.emptied.iter().all(|e| e.removed == 1), "{:?}", s.emptied);
    for dir in [&inp, &out] {
        assert_eq!(
            std::fs::read_dir(dir).unwrap().count(),
            0,
            "{}",
            dir.display()
        );
    }
    let e = check(flags(Some("yes"))).unwrap_err().to_string();
    assert!(
        e.starts_with("RTB_EMPTY_SCRATCH: 'yes' is not 1 or 0"),
        "{e}"
    );
}

#[test]
fn attempts_of_a_run_get_folders_of_their_own() {
    let check = |extra: &[&str]| args(extra).check(std::time::SystemTime::now());
    let base = ["--output-bucket", "s3://bkt/run", "--job-id", "j1"];
    let with =
        |more: &[&'static str]| -> Vec<&str> { base.iter().chain(more.iter()).copied().collect() };
    // No run id: the job's folder, attempt 1 (a plain `run`, the original contract).
    let s = check(&base).unwrap();
    assert_eq!(s.attempt, 1);
    assert_eq!(
        s.records.unwrap().result_key(),
        "run/_rtb-job/j1/result.json"
    );
    // A run id: the attempt's folder; AWS Batch's attempt number, unless one is given.
    let s = check(&with(&[
        "--run-id",
        "r20261201T101500",
        "--aws-batch-job-attempt",
        "3",
    ]))
    .unwrap();
    assert_eq!(s.attempt, 3);
    assert_eq!(
        s.records.as_ref().unwrap().result_key(),
        "run/_rtb-job/j1/r20261201T101500-a3/result.json"
    );
    assert_eq!(
        s.attempt_records(2).unwrap().root().to_string(),
        "s3://bkt/run/_rtb-job/j1/r20261201T101500-a2/"
    );
    let s = check(&with(&[
        "--run-id",
        "r1",
        "--attempt",
        "2",
        "--aws-batch-job-attempt",
        "5",
        "--log-bucket",
        "s3://logs/j1",
    ]))
    .unwrap();
    assert_eq!(s.attempt, 2);
    assert_eq!(s.records.unwrap().root().to_string(), "s3://logs/j1/r1-a2/");
    // Bad values name their setting.
    for (extra, want) in [
        (&["--attempt", "0"][..], "RTB_ATTEMPT: "),
        (
            &["--aws-batch-job-attempt", "x"][..],
            "AWS_BATCH_JOB_ATTEMPT: ",
        ),
        (&["--run-id", "../x"][..], "RTB_RUN_ID: "),
    ] {
        let e = check(&with(extra)).unwrap_err().to_string();
        assert!(e.starts_with(want), "{e}");
    }
}

#[test]
fn the_log_pace_is_a_bounded_duration() {
    let check = |extra: &[&str]| args(extra).check(std::time::SystemTime::now());
    let pace = |extra: &[&str]| check(extra).map(|s| s.log_every).map_err(|e| e.to_string());
    assert_eq!(pace(&[]), Ok(Duration::from_secs(1)), "the default");
    assert_eq!(pace(&["--log-every", ""]), Ok(Duration::from_secs(1)));
    assert_eq!(
        pace(&["--log-every", "250ms"]),
        Ok(Duration::from_millis(250))
    );
    assert_eq!(pace(&["--log-every", "1m"]), Ok(Duration::from_secs(60)));
    for (value, says) in [
        ("soon", "RTB_LOG_EVERY: 'soon' is not a duration"),
        ("10ms", "RTB_LOG_EVERY: must be from 100ms to 1m"),
        ("2m", "RTB_LOG_EVERY: must be from 100ms to 1m"),
    ] {
        let e = pace(&["--log-every", value]).expect_err(value);
        assert!(e.contains(says), "{value}: {e}");
    }
}
