//! Starting, steering and stopping one mitmdump running tests/world/faults.py.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::control;
use crate::rule::Rule;

/// How long mitmdump may take to answer its first control call. It needs ~1 s idle; a test
/// machine busy compiling can make that several times longer.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts with a fresh port when another process took the free one first.
const PORT_ATTEMPTS: u32 = 3;

/// One call the proxy saw, in arrival order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The SigV4 credential scope's service (`ec2`, `ssm`, `s3`...); `imds` for the
    /// instance metadata service, empty when the call was not signed.
    pub service: String,
    /// The operation (`RunInstances`, `SendCommand`, `PutObject`...).
    pub action: String,
    pub method: String,
    /// URL path and query, as sent.
    pub path: String,
    /// The status the client got; `None` when it got no answer (dropped, stalled, or still
    /// in flight).
    pub status: Option<u16>,
    /// The fault kind applied (`"throttle"`, `"drop_response"`...), `None` when untouched.
    pub fault: Option<String>,
    /// Why the IAM proxy refused it (`principal action on resource: reason`), when it did
    /// (only proxies that also run tests/world/iam.py refuse calls).
    pub denied: Option<String>,
}

/// A fault-injection proxy in front of MiniStack, on a free port of 127.0.0.1. Dropping it
/// stops mitmdump (kill, then wait); a mitmdump whose test process died stops by itself.
pub struct FaultProxy {
    child: Child,
    addr: SocketAddr,
    upstream: String,
    log: PathBuf,
    scratch_confdir: Option<PathBuf>,
}

impl FaultProxy {
    /// A proxy in front of `$AWS_ENDPOINT_URL` (the test world's MiniStack).
    pub fn start() -> FaultProxy {
        match std::env::var("AWS_ENDPOINT_URL") {
            Ok(e) if e.starts_with("http://127.0.0.1:") => FaultProxy::start_for(&e),
            _ => panic!(
                "FaultProxy::start: AWS_ENDPOINT_URL must point at the local emulator \
                 (http://127.0.0.1:PORT): run tests/world/setup.sh && source .world/env"
            ),
        }
    }

    /// A proxy in front of `upstream` (`http://127.0.0.1:PORT`: traffic stays on loopback).
    pub fn start_for(upstream: &str) -> FaultProxy {
        let upstream = upstream.trim_end_matches('/').to_string();
        let port_ok = upstream
            .strip_prefix("http://127.0.0.1:")
            .is_some_and(|p| p.parse::<u16>().is_ok());
        assert!(
            port_ok,
            "FaultProxy::start_for: upstream must be http://127.0.0.1:PORT, not {upstream:?}"
        );
        let mitmdump = mitmdump_path();
        let addons = addon_paths();
        for addon in &addons {
            assert!(
                addon.is_file(),
                "FaultProxy: the addon {} is missing",
                addon.display()
            );
        }
        let (confdir, scratch_confdir) = confdir();
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let log =
                std::env::temp_dir().join(format!("rtb-faults-{}-{port}.log", std::process::id()));
            let child = spawn(&mitmdump, &addons, &upstream, port, &confdir, &log);
            let mut proxy = FaultProxy {
                child,
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                upstream: upstream.clone(),
                log,
                scratch_confdir: None,
            };
            match proxy.wait_ready() {
                Ok(()) => {
                    proxy.scratch_confdir = scratch_confdir;
                    return proxy;
                }
                Err(log_text) => {
                    // Dropping `proxy` kills what is left and removes the log.
                    let port_taken = log_text.contains("in use") || log_text.contains("Errno 98");
                    last_log = log_text;
                    if !port_taken {
                        break;
                    }
                }
            }
        }
        if let Some(dir) = scratch_confdir {
            let _ = std::fs::remove_dir_all(dir);
        }
        panic!(
            "FaultProxy: {} did not start in front of {upstream}; its output:\n{last_log}",
            mitmdump.display()
        );
    }

    /// `http://127.0.0.1:PORT`: give it to the SDK as the endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// mitmdump's process id (to watch its memory, for instance).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The emulator endpoint calls are forwarded to.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Append a rule (after the ones already there).
    pub fn add(&self, rule: Rule) {
        assert!(
            rule.has_fault(),
            "Rule::on({:?}) has no fault: add .delay(), .error(), .throttle(), ...",
            rule.action()
        );
        let body = Value::Array(vec![rule.to_json()]).to_string();
        let (status, answer) = self.control("POST", "/_faults/rules", Some(&body));
        assert_eq!(status, 200, "the fault proxy refused rule {body}: {answer}");
    }

    /// Remove every rule (calls seen so far are kept).
    pub fn clear(&self) {
        self.control("DELETE", "/_faults/rules", None);
    }

    /// Forget the calls seen so far.
    pub fn clear_calls(&self) {
        self.control("DELETE", "/_faults/calls", None);
    }

    /// Every call the proxy saw, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        let (_, body) = self.control("GET", "/_faults/calls", None);
        match serde_json::from_str::<Value>(&body) {
            Ok(Value::Array(items)) => items.iter().map(parse_call).collect(),
            _ => panic!("the fault proxy's call list is not a JSON array: {body}"),
        }
    }

    /// How many calls of this action the proxy saw (faulted or not).
    pub fn count(&self, action: &str) -> usize {
        self.calls().iter().filter(|c| c.action == action).count()
    }

    pub(crate) fn control(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        match control::request(self.addr, method, path, body, CONTROL_TIMEOUT) {
            Ok((status, answer)) if status == 200 || method == "POST" => (status, answer),
            Ok((status, answer)) => {
                panic!("fault proxy: {method} {path} answered {status}: {answer}")
            }
            Err(e) => panic!(
                "fault proxy on {}: {method} {path} failed: {e}{}",
                self.addr,
                self.exit_note()
            ),
        }
    }

    /// Ready once the addon answers a ping; Err(its output) when mitmdump exited or hung.
    fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("(exited: {status})\n{}", self.log_text()));
            }
            if let Ok((200, _)) = control::request(
                self.addr,
                "GET",
                "/_faults/ping",
                None,
                Duration::from_secs(2),
            ) {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "(no answer on {} after {START_TIMEOUT:?})\n{}",
                    self.addr,
                    self.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn exit_note(&self) -> String {
        let text = self.log_text();
        if text.is_empty() {
            String::new()
        } else {
            format!("\nmitmdump's output:\n{text}")
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() && !self.log_text().is_empty() {
            eprintln!(
                "fault proxy {}: mitmdump's output is in {}",
                self.addr,
                self.log.display()
            );
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
        if let Some(dir) = &self.scratch_confdir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn spawn(
    mitmdump: &Path,
    addons: &[PathBuf],
    upstream: &str,
    port: u16,
    confdir: &Path,
    log: &Path,
) -> Child {
    let out = File::create(log)
        .unwrap_or_else(|e| panic!("FaultProxy: cannot create {}: {e}", log.display()));
    let err = out
        .try_clone()
        .unwrap_or_else(|e| panic!("FaultProxy: cannot reopen {}: {e}", log.display()));
    Command::new(mitmdump)
        .arg("-q")
        .args(["--mode", &format!("reverse:{upstream}")])
        .args(["--listen-host", "127.0.0.1"])
        .args(["--listen-port", &port.to_string()])
        // No connection to the emulator before a call is forwarded (dropped calls make none);
        // the Host header the client signed goes through unchanged.
        .args(["--set", "connection_strategy=lazy"])
        .args(["--set", "keep_host_header=true"])
        .args(["--set", &format!("confdir={}", confdir.display())])
        .args(addons.iter().flat_map(|a| [Path::new("-s"), a.as_path()]))
        .env("RTB_FAULTS_PARENT_PID", std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("FaultProxy: cannot run {}: {e}", mitmdump.display()))
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("FaultProxy: no free port on 127.0.0.1: {e}"))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The addons each proxy loads, in order (tests/world/). Another addon (rate limits,
/// prices...) goes in this list.
const ADDONS: &[&str] = &["faults.py"];

/// Canonical, so tests/world/leftovers.sh recognises this checkout's proxies by their command line.
fn addon_paths() -> Vec<PathBuf> {
    ADDONS
        .iter()
        .map(|name| {
            let path = repo_root().join("tests/world").join(name);
            std::fs::canonicalize(&path).unwrap_or(path)
        })
        .collect()
}

/// `$RTB_WORLD_MITMDUMP`, else the fault venv next to `$RTB_WORLD_VENV`, else the repo's.
fn mitmdump_path() -> PathBuf {
    if let Some(p) = std::env::var_os("RTB_WORLD_MITMDUMP") {
        return PathBuf::from(p);
    }
    let mut candidates = Vec::new();
    if let Some(venv) = std::env::var_os("RTB_WORLD_VENV").map(PathBuf::from) {
        if let Some(world) = venv.parent() {
            candidates.push(world.join("faults-venv/bin/mitmdump"));
        }
        candidates.push(venv.join("bin/mitmdump"));
    }
    candidates.push(repo_root().join(".world/faults-venv/bin/mitmdump"));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "FaultProxy: mitmdump not found (looked at {candidates:?}): run tests/world/setup.sh \
                 && source .world/env, or set RTB_WORLD_MITMDUMP"
            )
        })
}

/// The Python of the proxy's venv (next to its mitmdump): what runs the addons and their
/// unit tests (tests/world/test_*.py).
pub fn world_python() -> PathBuf {
    mitmdump_path().with_file_name("python")
}

/// mitmproxy's CA directory: the world's (made once by setup.sh), else a fresh one for this
/// proxy (mitmdump then makes a key, ~0.7 s), removed with it.
fn confdir() -> (PathBuf, Option<PathBuf>) {
    let mut shared = Vec::new();
    if let Some(d) = std::env::var_os("RTB_WORLD_FAULTS_CONFDIR") {
        shared.push(PathBuf::from(d));
    }
    shared.push(repo_root().join(".world/mitmproxy"));
    if let Some(d) = shared
        .into_iter()
        .find(|d| d.join("mitmproxy-ca.pem").is_file())
    {
        return (d, None);
    }
    let scratch = std::env::temp_dir().join(format!(
        "rtb-faults-conf-{}-{}",
        std::process::id(),
        free_port()
    ));
    (scratch.clone(), Some(scratch))
}

fn parse_call(v: &Value) -> Call {
    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Call {
        service: text("service"),
        action: text("action"),
        method: text("method"),
        path: text("path"),
        status: v
            .get("status")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok()),
        fault: v.get("fault").and_then(Value::as_str).map(str::to_string),
        denied: v.get("denied").filter(|d| d.is_object()).map(|d| {
            let t = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("");
            format!(
                "{} {} on {}: {}",
                t("principal"),
                t("action"),
                t("resource"),
                t("reason")
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn call_from_json() {
        let c = parse_call(
            &json!({"service": "ec2", "action": "RunInstances", "method": "POST",
            "path": "/", "status": 503, "fault": "throttle"}),
        );
        assert_eq!(c.status, Some(503));
        assert_eq!(c.fault.as_deref(), Some("throttle"));
        let c = parse_call(
            &json!({"service": "s3", "action": "PutObject", "method": "PUT",
            "path": "/b/k", "status": null, "fault": null}),
        );
        assert_eq!((c.status, c.fault), (None, None));
    }
}
