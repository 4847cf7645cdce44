//! Who runs where: `status`, `list`, `cleanup` and `stop` right about pool instances (whose
//! tags cannot change after launch), instances that AWS Batch manages left alone, an earlier
//! run's instances ended only when that run is dead, rows that would overwrite each other
//! refused, `--resume` re-running rows that changed, and spot fallback that really is
//! on demand.

mod common;

use std::process::Command;

use common::{run_render, unique};

/// A test's own workstation (registry, owner) and folder for its batch files.
struct Desk {
    state: tempfile::TempDir,
    dir: tempfile::TempDir,
    user: String,
}

impl Desk {
    fn new() -> Desk {
        Desk {
            state: tempfile::tempdir().expect("tmp"),
            dir: tempfile::tempdir().expect("tmp"),
            user: unique("user"),
        }
    }

    /// Another workstation of the same user: its own registry, the same `$USER`.
    #[allow(dead_code)]
    fn elsewhere(&self) -> Desk {
        Desk {
            state: tempfile::tempdir().expect("tmp"),
            dir: tempfile::tempdir().expect("tmp"),
            user: self.user.clone(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = run_render(args);
        c.env("XDG_STATE_HOME", self.state.path())
            .env("USER", &self.user)
            .current_dir(self.dir.path());
        c
    }

    fn out(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let o = self.cmd(args).output().expect("run");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    }
}

/// Rows whose outputs are the same, or one inside another's, are refused before anything is
/// launched, naming both rows (job ids alone were checked, and the rows overwrote each other).
#[test]
fn rows_sharing_an_output_prefix_are_refused_before_launch() {
    let desk = Desk::new();
    desk.write(
        "shared.csv",
        "n,out\n1,s3://lab-renders/scene\n2,s3://lab-renders/other\n3,s3://lab-renders/scene/frames\n",
    );
    let file = desk.write(
        "shared.toml",
        "[batch]\ncsv = \"shared.csv\"\n[job]\nami = \"ami-0abc1234def567890\"\ncommand = \"render(${n})\"\noutput = \"${out}\"\n",
    );
    // Nothing may reach AWS: an endpoint nobody listens on would fail any call.
    for extra in [&[][..], &["--dry-run"][..]] {
        let mut args = vec!["batch", file.as_str(), "--endpoint-url", "http://127.0.0.1:9"];
        args.extend_from_slice(extra);
        let (code, out, err) = desk.out(&args);
        assert_eq!(code, Some(2), "{err}");
        assert!(out.is_empty(), "{out}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(
            err.contains("row 3 (line 4)")
                && err.contains("row 1's output s3://lab-renders/scene")
                && err.contains("one inside the other"),
            "{err}"
        );
    }
}

/// An EC2 client for a MiniStack account of the test's own (MiniStack keeps separate state
/// per 12-digit access key id): `cleanup --all-owners` there sees no other test's instances.
async fn own_account() -> (String, aws_sdk_ec2::Client) {
    common::endpoint();
    let account = format!(
        "{:012}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() % 1_000_000_000_000)
            .unwrap_or(7)
    );
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .credentials_provider(aws_credential_types::Credentials::new(
            &account, "test", None, None, "test",
        ))
        .load()
        .await;
    (account, aws_sdk_ec2::Client::new(&config))
}

/// Launch a metadata-only instance (an AMI never registered) with these tags.
async fn tagged_instance(ec2: &aws_sdk_ec2::Client, tags: &[(&str, &str)]) -> String {
    use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
    let spec = TagSpecification::builder()
        .resource_type(ResourceType::Instance)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                .collect(),
        ))
        .build();
    ec2.run_instances()
        .image_id("ami-0123456789abcdef0")
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .tag_specifications(spec)
        .send()
        .await
        .expect("run instances")
        .instances()[0]
        .instance_id()
        .expect("id")
        .to_string()
}

async fn state(ec2: &aws_sdk_ec2::Client, id: &str) -> String {
    ec2.describe_instances()
        .instance_ids(id)
        .send()
        .await
        .ok()
        .and_then(|o| {
            o.reservations()
                .iter()
                .flat_map(|r| r.instances())
                .next()
                .and_then(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()))
        })
        .unwrap_or_else(|| "gone".into())
}

/// An AWS Batch compute environment's instance carries `rtb:tool` (the environment's launch
/// tags, as `aws-batch setup` sets them) and no job, so it looked like "no job, older than the
/// limit": `cleanup --all-owners` ended it under running Batch jobs. It is left alone, by the
/// tags AWS puts on the instances it launches for Batch; a real orphan of ours still ends.
#[tokio::test]
async fn cleanup_all_owners_leaves_a_compute_environments_instances_alone() {
    let (account, ec2) = own_account().await;
    // The tags AWS Batch's instances carry: the compute environment's own (ours), the service
    // tag, and the Auto Scaling group AWS Batch names after the environment.
    let ce = tagged_instance(
        &ec2,
        &[
            ("Name", "run-render-lab-queue"),
            ("rtb:tool", "run-render"),
            ("AWSBatchServiceTag", "batch"),
            (
                "aws:autoscaling:groupName",
                "AWSBatch-run-render-lab-ce-asg-6c1e3f2a-0b1d-3e59-9f27-5d0c2ab3e4f1",
            ),
        ],
    )
    .await;
    let orphan = tagged_instance(
        &ec2,
        &[
            ("Name", "run-render-orphan"),
            ("rtb:tool", "run-render"),
            ("rtb:owner", "a-colleague"),
        ],
    )
    .await;
    let desk = Desk::new();
    let run = |args: &[&str]| {
        let o = desk
            .cmd(args)
            .env("AWS_ACCESS_KEY_ID", &account)
            .output()
            .expect("run");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&[
        "cleanup",
        "--all-owners",
        "--older-than",
        "0s",
        "--yes",
        "--json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    let line = |id: &str| {
        doc["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .find(|l| l["instance_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not judged: {doc}"))
    };
    let kept = line(&ce);
    assert_eq!(kept["terminate"], false, "{kept}");
    assert!(
        kept["why"].as_str().unwrap_or("").contains("AWS Batch"),
        "{kept}"
    );
    assert_eq!(line(&orphan)["terminate"], true, "{doc}");
    assert_eq!(state(&ec2, &ce).await, "running", "the Batch instance runs on");
    assert_ne!(state(&ec2, &orphan).await, "running", "the orphan is ended");
    // `list` shows it for what it is.
    let (code, out, err) = run(&["list", "--all-owners"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.lines().any(|l| l.starts_with(&ce) && l.contains("(AWS Batch")),
        "{out}"
    );
    let _ = ec2.terminate_instances().instance_ids(&ce).send().await;
}
