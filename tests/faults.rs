//! Faults a lab's account meets, provoked for real: the client talks to MiniStack through a
//! fault-injection proxy (mitmdump, `rtb-testkit`) that drops, stalls, throttles or fails
//! chosen calls, or an instance is terminated from outside. Each test checks the client's
//! exit code and message, that no output was lost, and that nothing is left running. The
//! client and its instances act under the shipped IAM policies (`World::enforced`; the fault
//! proxy sits in front of the world's IAM proxy), and no call of theirs may be refused.

mod common;

use std::time::{Duration, Instant};

use common::{support_image, unique, Watched, World};
use rtb_testkit::Rule;

/// The flags of a job through `proxy`: the test AMI and, for a container job (`image`
/// given), the test image with Octave.
fn args_via<'a>(proxy: &'a str, ami: &'a str, job_id: &'a str, image: &'a str) -> Vec<&'a str> {
    let mut v = vec![
        "--endpoint-url",
        proxy,
        "--ami",
        ami,
        "--job-id",
        job_id,
        "--instance-type",
        "t3.micro",
        "--agent-timeout",
        "60s",
    ];
    if !image.is_empty() {
        v.extend(["--image", image, "--interpreter", "octave-cli"]);
    }
    v
}

fn owned(v: Vec<&str>) -> Vec<String> {
    v.into_iter().map(String::from).collect()
}

/// The client, as the world's client principal.
fn spawn(w: &World, args: &[String]) -> Watched {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Watched::spawn(w.run_render(&refs))
}

async fn only_instance(w: &World, job_id: &str) -> (String, String) {
    let instances = w.instances_of(job_id).await;
    assert_eq!(
        instances.len(),
        1,
        "one instance for {job_id}: {instances:?}"
    );
    instances[0].clone()
}

async fn wait_state(w: &World, id: &str, want: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let s = w.state_of(id).await;
        if s == want || s == "gone" || start.elapsed() > limit {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// RunInstances is carried out but its answer never arrives: the client finds the instance
/// by its launch token (no second launch), runs the job on it and terminates it.
#[tokio::test]
async fn lost_launch_answer_is_found_by_its_token_and_adopted() {
    let w = World::enforced().await;
    let ami = w.test_ami().await;
    let proxy = w.fault_proxy();
    proxy.add(Rule::on("RunInstances").times(1).drop_response());
    let job_id = unique("lostlaunch");
    let endpoint = proxy.endpoint();
    let image = String::new();
    let mut args = owned(args_via(&endpoint, &ami, &job_id, &image));
    args.extend(owned(vec!["--shell", "echo adopted-and-ran"]));
    let done = spawn(&w, &args).finish(Duration::from_secs(120));
    assert_eq!(done.code, Some(0), "{}", done.all());
    assert!(
        done.stderr().contains("by its launch token"),
        "{}",
        done.all()
    );
    assert!(done.stdout().contains("adopted-and-ran"), "{}", done.all());
    assert_eq!(proxy.count("RunInstances"), 1, "asked again although found");
    let (_, state) = only_instance(&w, &job_id).await;
    assert_eq!(state, "terminated");
    w.assert_no_denials();
}

/// Throttling bursts on every call the client waits with: it rides them out.
#[tokio::test]
async fn throttling_bursts_during_waits_are_ridden_out() {
    let w = World::enforced().await;
    let ami = w.test_ami().await;
    let out = w.output_bucket("fault-throttle").await;
    let proxy = w.fault_proxy();
    for action in [
        "DescribeInstances",
        "DescribeInstanceInformation",
        "GetCommandInvocation",
        "SendCommand",
        // the live log
        "ListObjectsV2",
        "GetObject",
    ] {
        proxy.add(Rule::on(action).skip(1).times(5).throttle());
    }
    let job_id = unique("throttle");
    let endpoint = proxy.endpoint();
    let image = support_image();
    let output = format!("s3://{out}/o");
    let mut args = owned(args_via(&endpoint, &ami, &job_id, &image));
    args.extend(owned(vec![
        "--output",
        &output,
        "--command",
        "disp('through the storm'); fid = fopen(fullfile(getenv('OUTPUT_SCRATCH'), 'r.txt'), 'w'); fprintf(fid, 'ok'); fclose(fid);",
    ]));
    let done = spawn(&w, &args).finish(Duration::from_secs(180));
    assert_eq!(done.code, Some(0), "{}", done.all());
    assert!(
        done.stdout().contains("through the storm"),
        "{}",
        done.all()
    );
    assert_eq!(w.get(&out, "o/r.txt").await.as_deref(), Some(&b"ok"[..]));
    let throttled = proxy.calls().iter().filter(|c| c.fault.is_some()).count();
    assert!(throttled >= 10, "only {throttled} calls were throttled");
    let (_, state) = only_instance(&w, &job_id).await;
    assert_eq!(state, "terminated");
    w.assert_no_denials();
}

/// The endpoint stops answering mid-job: the client gives up in bounded time with exit 69,
/// naming the instance and its deadline, and the instance still ends itself at its deadline.
#[tokio::test]
async fn a_stalled_endpoint_ends_the_client_in_bounded_time_and_the_deadline_still_holds() {
    let w = World::enforced().await;
    let ami = w.test_ami().await;
    let proxy = w.fault_proxy();
    let job_id = unique("stall");
    let endpoint = proxy.endpoint();
    let image = String::new();
    let mut args = owned(args_via(&endpoint, &ami, &job_id, &image));
    args.extend(owned(vec![
        "--shell",
        "echo started; sleep 300",
        "--timeout",
        "25s",
        "--deadline-margin",
        "5s",
        "--api-patience",
        "8s",
    ]));
    let mut run = spawn(&w, &args);
    assert!(
        run.wait_for("running the shell command", Duration::from_secs(60))
            .is_some(),
        "{}",
        run.seen
            .iter()
            .map(|l| l.2.clone())
            .collect::<Vec<_>>()
            .join("\n")
    );
    proxy.add(Rule::on("*").stall());
    let stalled = Instant::now();
    let done = run.finish(Duration::from_secs(60));
    let took = stalled.elapsed();
    assert_eq!(done.code, Some(69), "{}", done.all());
    assert!(took < Duration::from_secs(30), "gave up after {took:?}");
    let (id, state) = only_instance(&w, &job_id).await;
    let stderr = done.stderr();
    assert!(stderr.contains("has not answered"), "{stderr}");
    assert!(
        stderr.contains(&id) && stderr.contains("deadline"),
        "{stderr}"
    );
    assert_eq!(state, "running", "the client could not terminate it");
    // Nobody terminates it: its own deadline (launch + 30 s) does.
    let state = wait_state(&w, &id, "terminated", Duration::from_secs(60)).await;
    assert!(state == "terminated" || state == "gone", "{state}");
    w.assert_no_denials();
}

/// TerminateInstances fails a few times: the client asks again until it is confirmed.
#[tokio::test]
async fn terminate_failing_transiently_is_retried_until_confirmed() {
    let w = World::enforced().await;
    let ami = w.test_ami().await;
    let proxy = w.fault_proxy();
    proxy.add(
        Rule::on("TerminateInstances")
            .times(4)
            .error(500, "InternalError"),
    );
    let job_id = unique("termfail");
    let endpoint = proxy.endpoint();
    let image = String::new();
    let mut args = owned(args_via(&endpoint, &ami, &job_id, &image));
    args.extend(owned(vec!["--shell", "true", "--json"]));
    let done = spawn(&w, &args).finish(Duration::from_secs(120));
    assert_eq!(done.code, Some(0), "{}", done.all());
    let report: serde_json::Value =
        serde_json::from_str(&done.stdout()).expect("one JSON document");
    assert_eq!(report["instance"], "terminated");
    assert!(proxy.count("TerminateInstances") >= 5);
    let (_, state) = only_instance(&w, &job_id).await;
    assert_eq!(state, "terminated");
    w.assert_no_denials();
}

/// Ctrl-C while termination cannot be confirmed (TerminateInstances hangs): the client asks
/// again, reports that it could not, and exits 69, not the job's code.
#[tokio::test]
async fn ctrl_c_during_an_unconfirmable_termination_exits_69() {
    let w = World::enforced().await;
    let ami = w.test_ami().await;
    let proxy = w.fault_proxy();
    proxy.add(Rule::on("TerminateInstances").stall());
    let job_id = unique("termhang");
    let endpoint = proxy.endpoint();
    let image = String::new();
    let mut args = owned(args_via(&endpoint, &ami, &job_id, &image));
    args.extend(owned(vec!["--shell", "true", "--api-patience", "6s"]));
    let mut run = spawn(&w, &args);
    assert!(run
        .wait_for("terminating i-", Duration::from_secs(60))
        .is_some());
    std::thread::sleep(Duration::from_millis(500));
    run.signal(libc::SIGINT);
    let done = run.finish(Duration::from_secs(60));
    assert_eq!(done.code, Some(69), "{}", done.all());
    assert!(
        done.stderr().contains("could not request termination"),
        "{}",
        done.stderr()
    );
    assert!(
        done.stderr().contains("MAY STILL BE RUNNING"),
        "{}",
        done.stderr()
    );
    let (id, _) = only_instance(&w, &job_id).await;
    w.terminate(&id).await;
    w.assert_no_denials();
}

/// The instance vanishes under the job (spot reclaim, the console): seen within seconds and
/// reported as its own outcome and exit code.
#[tokio::test]
async fn instance_terminated_from_outside_mid_job_is_reported_lost() {
    let w = World::enforced().await;
    let ami = w.test_ami().await;
    let out = w.output_bucket("fault-lost").await;
    let job_id = unique("lost");
    let image = support_image();
    let output = format!("s3://{out}/o");
    let endpoint = w.scope().endpoint();
    let mut args = owned(args_via(&endpoint, &ami, &job_id, &image));
    args.extend(owned(vec![
        "--output",
        &output,
        "--command",
        "disp(['long render ' 'started']); pause(300);",
        "--json",
    ]));
    let mut run = spawn(&w, &args);
    assert!(run
        .wait_for("long render started", Duration::from_secs(90))
        .is_some());
    let (id, _) = only_instance(&w, &job_id).await;
    w.terminate(&id).await;
    let gone = Instant::now();
    let done = run.finish(Duration::from_secs(60));
    assert!(
        gone.elapsed() < Duration::from_secs(15),
        "seen after {:?}",
        gone.elapsed()
    );
    assert_eq!(done.code, Some(70), "{}", done.all());
    let report: serde_json::Value =
        serde_json::from_str(&done.stdout()).expect("one JSON document");
    assert_eq!(report["outcome"], "instance_lost");
    assert!(
        report["error"]
            .as_str()
            .unwrap_or_default()
            .contains("ended under the job"),
        "{report}"
    );
    w.assert_no_denials();
}

/// A lost SendCommand answer makes the SDK send the job script again: the second delivery
/// waits on the running job instead of killing it, and the job runs once.
#[tokio::test]
async fn a_retried_send_command_does_not_kill_the_job_it_duplicates() {
    let w = World::enforced().await;
    let ami = w.test_ami().await;
    let out = w.output_bucket("fault-dup").await;
    let proxy = w.fault_proxy();
    proxy.add(Rule::on("SendCommand").times(1).drop_response());
    let job_id = unique("dup");
    let endpoint = proxy.endpoint();
    let image = support_image();
    let output = format!("s3://{out}/o");
    let mut args = owned(args_via(&endpoint, &ami, &job_id, &image));
    args.extend(owned(vec![
        "--output",
        &output,
        "--command",
        "disp('once'); pause(4); fid = fopen(fullfile(getenv('OUTPUT_SCRATCH'), 'r.txt'), 'w'); fprintf(fid, 'done'); fclose(fid);",
    ]));
    let done = spawn(&w, &args).finish(Duration::from_secs(150));
    assert_eq!(done.code, Some(0), "{}", done.all());
    assert!(proxy.count("SendCommand") >= 2, "the answer was not lost");
    assert_eq!(w.get(&out, "o/r.txt").await.as_deref(), Some(&b"done"[..]));
    let result = w
        .get(&out, &format!("o/_rtb-job/{job_id}/result.json"))
        .await
        .expect("result record");
    let result: serde_json::Value = serde_json::from_slice(&result).unwrap();
    assert_eq!(result["outcome"], "succeeded", "{result}");
    let shown = done
        .stdout()
        .lines()
        .filter(|l| l.ends_with("│ once"))
        .count();
    assert_eq!(shown, 1, "the job ran {shown} times:\n{}", done.stdout());
    w.assert_no_denials();
}

/// 3,000 lines at once, read through a slow S3: every line is shown, once, in order.
#[tokio::test]
async fn a_burst_of_3000_lines_is_shown_once_and_in_order() {
    let w = World::enforced().await;
    let ami = w.test_ami().await;
    let out = w.output_bucket("fault-burst").await;
    let proxy = w.fault_proxy();
    proxy.add(Rule::on("GetObject").delay(Duration::from_millis(300)));
    let job_id = unique("burst");
    let endpoint = proxy.endpoint();
    let image = support_image();
    let output = format!("s3://{out}/o");
    let mut args = owned(args_via(&endpoint, &ami, &job_id, &image));
    args.extend(owned(vec![
        "--output",
        &output,
        "--command",
        "for i = 1:3000, printf('burst line %d\\n', i); end; pause(2); for i = 3001:3010, printf('burst line %d\\n', i); end",
    ]));
    let done = spawn(&w, &args).finish(Duration::from_secs(150));
    assert_eq!(done.code, Some(0), "{}", done.all());
    let numbers: Vec<u32> = done
        .stdout()
        .lines()
        .filter_map(|l| l.split("burst line ").nth(1))
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let want: Vec<u32> = (1..=3010).collect();
    assert_eq!(numbers.len(), want.len(), "lines shown: {}", numbers.len());
    assert_eq!(numbers, want, "out of order or repeated");
    w.assert_no_denials();
}

/// Ctrl-C when the stop command cannot be sent: the client says the outputs are not being
/// saved, and does not claim they were.
#[tokio::test]
async fn ctrl_c_without_a_stop_command_does_not_claim_saved_outputs() {
    let w = World::enforced().await;
    let ami = w.test_ami().await;
    let out = w.output_bucket("fault-nostop").await;
    let proxy = w.fault_proxy();
    let job_id = unique("nostop");
    let endpoint = proxy.endpoint();
    let image = support_image();
    let output = format!("s3://{out}/o");
    let mut args = owned(args_via(&endpoint, &ami, &job_id, &image));
    args.extend(owned(vec![
        "--output",
        &output,
        "--command",
        "disp(['long render ' 'started']); pause(300);",
        "--api-patience",
        "5s",
        "--json",
    ]));
    let mut run = spawn(&w, &args);
    assert!(run
        .wait_for("long render started", Duration::from_secs(90))
        .is_some());
    proxy.add(Rule::on("SendCommand").error(400, "AccessDeniedException"));
    run.signal(libc::SIGINT);
    let done = run.finish(Duration::from_secs(90));
    assert_eq!(done.code, Some(130), "{}", done.all());
    assert!(
        done.stderr().contains("outputs are NOT being saved"),
        "{}",
        done.stderr()
    );
    let report: serde_json::Value =
        serde_json::from_str(&done.stdout()).expect("one JSON document");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(!error.contains("outputs saved"), "{error}");
    assert!(error.contains("did not confirm"), "{error}");
    assert_eq!(report["instance"], "terminated");
    w.assert_no_denials();
}

/// The endpoint stops answering mid-job (as when the emulator is frozen), and Ctrl-C comes
/// while it does: the stop command and the termination cannot reach AWS either. Patience is one
/// budget over consecutive failures, whatever the client is doing, so the client ends within
/// about one patience of the outage's start, exit 69, naming the instance and its deadline.
#[tokio::test]
async fn an_outage_with_ctrl_c_ends_the_client_within_one_patience() {
    let w = World::enforced().await;
    let ami = w.test_ami().await;
    let out = w.output_bucket("fault-outage").await;
    let proxy = w.fault_proxy();
    let job_id = unique("outage");
    let endpoint = proxy.endpoint();
    let image = support_image();
    let output = format!("s3://{out}/o");
    let mut args = owned(args_via(&endpoint, &ami, &job_id, &image));
    args.extend(owned(vec![
        "--output",
        &output,
        "--command",
        "disp(['long render ' 'started']); pause(300);",
        "--timeout",
        "5m",
        "--api-patience",
        "10s",
    ]));
    let mut run = spawn(&w, &args);
    assert!(
        run.wait_for("long render started", Duration::from_secs(90))
            .is_some(),
        "{}",
        run.seen
            .iter()
            .map(|l| l.2.clone())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let (id, _) = only_instance(&w, &job_id).await;
    proxy.add(Rule::on("*").stall());
    let stalled = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    run.signal(libc::SIGINT);
    let done = run.finish(Duration::from_secs(150));
    let took = stalled.elapsed();
    w.terminate(&id).await;
    assert_eq!(done.code, Some(69), "{}", done.all());
    // One patience (10 s) and the calls in flight when it ran out; not one per phase.
    assert!(
        took < Duration::from_secs(25),
        "gave up {took:?} after the outage began:\n{}",
        done.all()
    );
    let stderr = done.stderr();
    assert!(
        stderr.contains(&id) && stderr.contains("deadline"),
        "{stderr}"
    );
    w.assert_no_denials();
}

/// The job ends, then TerminateInstances stops answering: the client does not wait out a
/// termination timeout of its own on top of its patience; it gives up at its patience, exit 69,
/// with the instance id and how to end it.
#[tokio::test]
async fn an_unanswered_termination_gives_up_at_the_patience() {
    let w = World::enforced().await;
    let ami = w.test_ami().await;
    let proxy = w.fault_proxy();
    proxy.add(Rule::on("TerminateInstances").stall());
    let job_id = unique("termstall");
    let endpoint = proxy.endpoint();
    let image = String::new();
    let mut args = owned(args_via(&endpoint, &ami, &job_id, &image));
    args.extend(owned(vec!["--shell", "true", "--api-patience", "8s"]));
    let mut run = spawn(&w, &args);
    let asked = run.wait_for("terminating i-", Duration::from_secs(60));
    assert!(asked.is_some(), "{}", run.seen.len());
    let t = Instant::now();
    let done = run.finish(Duration::from_secs(150));
    let took = t.elapsed();
    let (id, _) = only_instance(&w, &job_id).await;
    w.terminate(&id).await;
    assert_eq!(done.code, Some(69), "{}", done.all());
    assert!(
        took < Duration::from_secs(25),
        "gave up {took:?} after asking:\n{}",
        done.all()
    );
    assert!(
        done.stderr()
            .contains(&format!("terminate-instances --instance-ids {id}")),
        "{}",
        done.stderr()
    );
    w.assert_no_denials();
}
