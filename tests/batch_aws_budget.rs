//! A budget on the AWS Batch engine while the client follows (`--max-cost`), end to end on
//! moto: the client counts what the jobs' attempts have accrued plus what the running ones are
//! committed to until its next look; at the budget, on-budget = "stop" ends the running jobs
//! (AWS Batch stops their containers as ECS does, SIGTERM first: the runner saves the outputs)
//! and "finish" lets them complete. Skipped, with the reason, when moto is not in the test
//! world.
//!
//! moto runs every job at once (no queueing: WORLD.md), so no job is ever waiting when the
//! budget is reached here: cancelling what has not started is table-tested in
//! src/batch/aws/budget.rs, and goes through the same TerminateJob as `stop --batch`.
//!
//! The client runs as the shipped client policies' principal through the world's IAM proxy in
//! front of moto, its jobs as the queue's job role (`common::moto::scope`); each test fails on
//! a refused call.

mod common;

use common::moto::{assert_no_denials, batch_file, enforced, moto, rows, Desk, Enforced};
use common::unique;

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Octave: write `frame.txt` into the outputs, then pause `secs`.
fn frame_then_pause(n: u32, secs: u32) -> String {
    format!("fid = fopen(fullfile(getenv('OUTPUT_SCRATCH'), 'frame.txt'), 'w'); fprintf(fid, 'row {n}'); fclose(fid); pause({secs});")
}

/// Two jobs that would run two minutes, at $36/h (a cent a second each) under a $0.30 budget
/// with on-budget = "stop": the budget is reached within seconds, both jobs are stopped
/// (`interrupted`), their outputs were saved, the summary says the budget was reached, and
/// what they cost stays within the budget plus what two jobs accrue while being stopped.
#[tokio::test]
async fn on_budget_stop_ends_the_running_jobs_and_their_outputs_are_saved() {
    let Some(moto) = moto() else { return };
    let Enforced {
        desk,
        c,
        queue: q,
        bucket,
        scope,
    } = enforced(&moto).await;
    let name = unique("abs");
    let file = batch_file(
        &desk,
        &name,
        &bucket,
        &rows([frame_then_pause(1, 120), frame_then_pause(2, 120)]),
    );
    let t = std::time::Instant::now();
    let (code, out, err) = desk.out(&[
        "batch",
        &file,
        "--engine",
        "aws-batch",
        "--queue",
        &q,
        "--json",
        "--price",
        "36",
        "--max-cost",
        "0.30",
        "--on-budget",
        "stop",
    ]);
    let took = t.elapsed();
    assert_ne!(
        code,
        Some(0),
        "stopped jobs are not a success: {err}\n{out}"
    );
    assert!(
        took.as_secs() < 100,
        "stopped long before the jobs' 120 s: {took:?}\n{err}"
    );
    assert!(err.contains("the budget of $0.30 was reached"), "{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).expect("summary JSON");
    assert!(
        summary["pool"]["budget_reached"]
            .as_str()
            .is_some_and(|r| r.contains("budget")),
        "{summary}"
    );
    for (n, j) in summary["jobs"].as_array().expect("jobs").iter().enumerate() {
        assert_eq!(j["outcome"], "interrupted", "{j}");
        // Its output was saved, as Ctrl-C saves it.
        let frame = c.get(&bucket, &format!("{}/frame.txt", n + 1)).await;
        let want = format!("row {}", n + 1);
        assert_eq!(frame.as_deref(), Some(want.as_bytes()), "{j}");
    }
    let spent = f(&summary["cost_usd"]);
    eprintln!("budget $0.30, stop: spent ${spent:.4} in {took:?}");
    // Two jobs at a cent a second each: the next look (5 s) and the stop (a few seconds).
    assert!(spent <= 0.30 + 0.30, "{summary}");
    assert_no_denials(&scope, true);
    let _ = desk.admin(&["aws-batch", "teardown", "--queue", &q]);
}

/// With on-budget = "finish" (the default), a budget reached while jobs run lets them complete:
/// they succeed, and the summary says the budget was reached, with no job held.
#[tokio::test]
async fn on_budget_finish_lets_the_running_jobs_complete() {
    let Some(moto) = moto() else { return };
    let Enforced {
        desk,
        c,
        queue: q,
        bucket,
        scope,
    } = enforced(&moto).await;
    let name = unique("abf");
    let file = batch_file(
        &desk,
        &name,
        &bucket,
        &rows([frame_then_pause(1, 12), frame_then_pause(2, 12)]),
    );
    let (code, out, err) = desk.out(&[
        "batch",
        &file,
        "--engine",
        "aws-batch",
        "--queue",
        &q,
        "--price",
        "36",
        "--max-cost",
        "0.15",
    ]);
    assert_eq!(code, Some(0), "{err}\n{out}");
    assert!(err.contains("the budget of $0.15 was reached"), "{err}");
    assert!(err.contains("the running ones finish"), "{err}");
    assert!(
        err.contains("the budget was reached: 0 job(s) not run"),
        "{err}"
    );
    for n in 1..=2 {
        let frame = c.get(&bucket, &format!("{n}/frame.txt")).await;
        assert_eq!(frame.as_deref(), Some(format!("row {n}").as_bytes()));
    }
    assert_no_denials(&scope, true);
    let _ = desk.admin(&["aws-batch", "teardown", "--queue", &q]);
}

/// With `--detach` nobody follows the spend, and AWS Batch takes no shorter lifetime: a budget
/// the worst case (every row at its timeout at the price) does not fit is refused in one line,
/// before anything is submitted.
#[tokio::test]
async fn a_detached_batch_whose_worst_case_passes_the_budget_is_refused() {
    let Some(moto) = moto() else { return };
    let desk = Desk::new(&moto);
    let name = unique("abd");
    // Two rows of 10 minutes (and their deadlines' margins) at $36/h: dollars at worst.
    let file = batch_file(
        &desk,
        &name,
        "rtb-never-used",
        &rows([frame_then_pause(1, 1), frame_then_pause(2, 1)]),
    );
    let (code, out, err) = desk.out(&[
        "batch",
        &file,
        "--engine",
        "aws-batch",
        "--queue",
        "rtb-never-used",
        "--detach",
        "--price",
        "36",
        "--max-cost",
        "1",
    ]);
    assert_eq!(code, Some(2), "{err}\n{out}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(
        lines[0].contains("--detach") && lines[0].contains("over $1.00"),
        "{err}"
    );
    let record = desk
        .state
        .path()
        .join("run-render/batches")
        .join(format!("{name}.json"));
    assert!(!record.exists(), "nothing was submitted");
}
