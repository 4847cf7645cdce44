//! The workstation's own record of its jobs: one JSON file per job under the XDG state dir
//! (`$XDG_STATE_HOME/run-render/jobs/`, by default `~/.local/state/run-render/jobs/`), written
//! *before* RunInstances and updated as the job goes. `status` and `list` work after a crash,
//! and a launch the client died in the middle of is found by the token recorded here.
//!
//! Everything here can also be found from S3 and tags alone (`status --output`); the registry
//! only saves the lookups, and knows the jobs this workstation started.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// How long `status` without arguments looks back.
pub const RECENT: Duration = Duration::from_secs(7 * 24 * 3600);

/// One job as this workstation knows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub job_id: String,
    /// RFC 3339, when the client decided to launch.
    pub created_at: String,
    /// The launch tokens, one per instance type tried (EC2's ClientToken and the
    /// `rtb:launch-token` tag).
    pub launch_tokens: Vec<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    /// The job's records folder (log chunks, result.json); none for a `--shell` job.
    pub records: Option<String>,
    pub output: Option<String>,
    pub shell: bool,
    pub instance_id: Option<String>,
    /// RFC 3339, the instance's own deadline.
    pub deadline: Option<String>,
    pub keep: bool,
    pub detached: bool,
    pub batch: Option<String>,
    /// The client that ran it, to tell a crashed launch from a live one.
    pub client_pid: Option<u32>,
    pub client_host: Option<String>,
    /// How the client saw it end, once it did (its outcome word and exit code).
    pub ended: Option<Ended>,
    /// The queue, for a job submitted to AWS Batch (no instance of ours runs it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_batch_queue: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    pub outcome: String,
    pub exit_code: i32,
    pub at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot write the job registry at {path}: {source} (set XDG_STATE_HOME to a writable folder)")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The registry folder.
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
}

impl Registry {
    /// `$XDG_STATE_HOME/run-render/jobs`, else `$HOME/.local/state/run-render/jobs`.
    pub fn open() -> Registry {
        let base = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .unwrap_or_else(|| std::env::temp_dir().join("run-render-state"));
        Registry::at(base.join("run-render").join("jobs"))
    }

    pub fn at(dir: PathBuf) -> Registry {
        Registry { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, job_id: &str) -> PathBuf {
        self.dir.join(format!("{job_id}.json"))
    }

    /// Write (or replace) an entry, atomically: a reader never sees half a file.
    pub fn save(&self, e: &Entry) -> Result<(), RegistryError> {
        let path = self.path(&e.job_id);
        let err = |source| RegistryError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(err)?;
        let tmp = self
            .dir
            .join(format!(".{}.{}.tmp", e.job_id, std::process::id()));
        let text = serde_json::to_string_pretty(e).unwrap_or_default();
        std::fs::write(&tmp, text).map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)
    }

    /// Change an entry in place (no-op when it does not exist).
    pub fn update(&self, job_id: &str, f: impl FnOnce(&mut Entry)) -> Result<(), RegistryError> {
        match self.get(job_id) {
            Some(mut e) => {
                f(&mut e);
                self.save(&e)
            }
            None => Ok(()),
        }
    }

    pub fn get(&self, job_id: &str) -> Option<Entry> {
        let text = std::fs::read_to_string(self.path(job_id)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Entries created within `within` of `now`, newest first. Unreadable files are skipped.
    pub fn recent(&self, now: SystemTime, within: Duration) -> Vec<Entry> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut entries: Vec<Entry> = dir
            .filter_map(Result::ok)
            .filter(|d| d.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|d| std::fs::read_to_string(d.path()).ok())
            .filter_map(|t| serde_json::from_str::<Entry>(&t).ok())
            .filter(|e| {
                humantime::parse_rfc3339(&e.created_at)
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .is_none_or(|age| age <= within)
            })
            .collect();
        entries.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        entries
    }

    /// Where jobs' cost records are kept: beside the entries (`run-render/costs/`).
    fn costs_dir(&self) -> PathBuf {
        self.dir
            .parent()
            .map(|p| p.join("costs"))
            .unwrap_or_else(|| self.dir.join("costs"))
    }

    /// Keep a job's cost record (replacing an earlier one), atomically.
    pub fn save_cost(&self, c: &crate::cost::CostRecord) -> Result<(), RegistryError> {
        let dir = self.costs_dir();
        let path = dir.join(format!("{}.json", c.job_id));
        let err = |source| RegistryError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(err)?;
        let tmp = dir.join(format!(".{}.{}.tmp", c.job_id, std::process::id()));
        std::fs::write(&tmp, serde_json::to_string_pretty(c).unwrap_or_default()).map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)
    }

    /// A job's cost record, when this workstation computed one.
    pub fn cost(&self, job_id: &str) -> Option<crate::cost::CostRecord> {
        let text = std::fs::read_to_string(self.costs_dir().join(format!("{job_id}.json"))).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Every cost record this workstation keeps.
    pub fn costs(&self) -> Vec<crate::cost::CostRecord> {
        let Ok(dir) = std::fs::read_dir(self.costs_dir()) else {
            return Vec::new();
        };
        dir.filter_map(Result::ok)
            .filter(|d| d.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|d| std::fs::read_to_string(d.path()).ok())
            .filter_map(|t| serde_json::from_str(&t).ok())
            .collect()
    }

    /// Entries of one batch.
    pub fn of_batch(&self, batch: &str) -> Vec<Entry> {
        self.recent(SystemTime::now(), Duration::MAX)
            .into_iter()
            .filter(|e| e.batch.as_deref() == Some(batch))
            .collect()
    }
}

/// This machine's name, for telling a live client from a crashed one.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// Whether the client that wrote `e` is still running (on this machine).
pub fn client_alive(e: &Entry) -> bool {
    match (e.client_pid, &e.client_host) {
        (Some(pid), Some(host)) if Some(host) == host_name().as_ref() => pid_alive(pid),
        _ => false,
    }
}

/// The distinct clients of these entries still running on this machine.
pub fn live_clients(entries: &[Entry]) -> Vec<u32> {
    let mut pids: Vec<u32> = entries
        .iter()
        .filter(|e| client_alive(e))
        .filter_map(|e| e.client_pid)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Whether process `pid` on this machine is still a running client (an exited one that
/// its parent has not reaped yet has no command line any more).
pub fn pid_alive(pid: u32) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmdline).contains("run-render")
}

/// Ask a client on this machine to stop, as Ctrl-C does.
pub fn interrupt(pid: u32) {
    // SAFETY: kill(2) with a pid read from our own registry and a signal number; it has no
    // memory effects on this process.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGINT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_recent_lists_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::at(dir.path().join("jobs"));
        let now = SystemTime::now();
        let stamp = |ago: u64| {
            humantime::format_rfc3339_seconds(now - Duration::from_secs(ago)).to_string()
        };
        for (id, ago) in [("old", 10 * 24 * 3600), ("a", 60), ("b", 5)] {
            reg.save(&Entry {
                job_id: id.into(),
                created_at: stamp(ago),
                launch_tokens: vec![format!("{id}-tok-0")],
                ..Entry::default()
            })
            .unwrap();
        }
        reg.update("a", |e| e.instance_id = Some("i-1".into()))
            .unwrap();
        assert_eq!(reg.get("a").unwrap().instance_id.as_deref(), Some("i-1"));
        let ids: Vec<String> = reg
            .recent(now, RECENT)
            .into_iter()
            .map(|e| e.job_id)
            .collect();
        assert_eq!(ids, ["b", "a"]);
        assert!(reg.get("missing").is_none());
        // A stray file does not break the listing.
        std::fs::write(dir.path().join("jobs/junk.json"), "{").unwrap();
        assert_eq!(reg.recent(now, RECENT).len(), 2);
    }

    #[test]
    fn a_dead_client_is_not_alive() {
        let e = Entry {
            client_pid: Some(u32::MAX - 1),
            client_host: host_name(),
            ..Entry::default()
        };
        assert!(!client_alive(&e));
        let me = Entry {
            client_pid: Some(std::process::id()),
            client_host: host_name(),
            ..Entry::default()
        };
        // The test binary is not run-render: only the client's own command line counts.
        assert!(!client_alive(&me));
    }
}
