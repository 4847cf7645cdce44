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
