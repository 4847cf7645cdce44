//! Principals registered with the test world's IAM-enforcing proxies (tests/world/iam.py).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use crate::control;

const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// An access key pair the proxies know as one principal of a scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub key_id: String,
    pub secret: String,
}

/// What a scope's principals may do: the shipped policies (file names in `ami/iam/`, or
/// `managed/NAME.json` in `tests/world/iam-managed/`) and the values of their placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeSetup {
    /// `ACCOUNT_ID` (MiniStack's account for keys that are not 12 digits).
    pub account: String,
    /// `INSTANCE_ROLE_NAME`: the instance role and its instance profile.
    pub instance_role: String,
    /// `QUEUE_NAME` (the AWS Batch policies).
    pub queue: String,
    /// `INPUT_BUCKET`, `OUTPUT_BUCKET`: one resource per bucket.
    pub input_buckets: Vec<String>,
    pub output_buckets: Vec<String>,
    /// The client's policies (default: `client-policy.json`, `client-batch-policy.json`).
    pub client_policies: Vec<String>,
    /// The instance role's (default: `instance-role-policy.json` and
    /// `managed/AmazonSSMManagedInstanceCore.json`).
    pub instance_policies: Vec<String>,
    /// An AWS Batch job's: the job role `aws-batch setup` makes, `<queue>-job` (default:
    /// `instance-role-policy.json`, `batch-job-role-policy.json`).
    pub batch_job_policies: Vec<String>,
}

impl Default for ScopeSetup {
    fn default() -> Self {
        ScopeSetup {
            account: "000000000000".into(),
            instance_role: "run-render-instance".into(),
            queue: "run-render".into(),
            input_buckets: Vec::new(),
            output_buckets: Vec::new(),
            client_policies: vec![
                "client-policy.json".into(),
                "client-batch-policy.json".into(),
            ],
            instance_policies: vec![
                "instance-role-policy.json".into(),
                "managed/AmazonSSMManagedInstanceCore.json".into(),
            ],
            batch_job_policies: vec![
                "instance-role-policy.json".into(),
                "batch-job-role-policy.json".into(),
            ],
        }
    }
}

/// One call the proxy refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// `client`, `instance` or `batch-job`.
    pub principal: String,
    pub key_id: String,
    /// The service and API operation (`ec2`, `CreateTags`).
    pub service: String,
    pub call: String,
    /// The first refused authorization: IAM action and resource ARN.
    pub action: String,
    pub resource: String,
    /// Which statement was missing or which condition failed.
    pub reason: String,
    pub path: String,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}:{} refused: {} on {} ({})",
            self.principal, self.service, self.call, self.action, self.resource, self.reason
        )
    }
}

/// A test's principals at the world's IAM-enforcing proxies: a client key, the instances its
/// launches start (bound by the proxy, their keys come from the metadata service), and a key
/// for AWS Batch jobs. Every call signed with these keys is evaluated against the shipped
/// policies; a refused call gets AWS's error and is recorded. Keys are this scope's alone, so
/// tests running at once do not see each other. Dropping the scope unregisters it.
pub struct IamScope {
    id: String,
    proxies: Vec<SocketAddr>,
    endpoint: String,
    moto_endpoint: Option<String>,
    client: Credentials,
    batch_job: Credentials,
    setup: Mutex<ScopeSetup>,
}

impl IamScope {
    /// A scope with the default policies and no bucket yet (add them with
    /// [`IamScope::allow_input_bucket`] / [`IamScope::allow_output_bucket`]).
    pub fn new() -> IamScope {
        IamScope::with(ScopeSetup::default())
    }

    pub fn with(setup: ScopeSetup) -> IamScope {
        IamScope::build(setup, new_credentials())
    }

    /// A scope whose client signs with `key_id` (and a fresh secret). A 12-digit key id makes
    /// MiniStack act in that account, away from every other test's resources; give it as
    /// `setup.account` too, so the policies' ARNs name that account.
    pub fn with_client_key(setup: ScopeSetup, key_id: &str) -> IamScope {
        IamScope::build(
            setup,
            Credentials {
                key_id: key_id.to_string(),
                secret: random_word(40),
            },
        )
    }

    fn build(setup: ScopeSetup, client: Credentials) -> IamScope {
        let endpoint = world_url("RTB_WORLD_IAM_URL");
        let moto_endpoint = std::env::var("RTB_WORLD_MOTO_IAM_URL")
            .ok()
            .filter(|u| u.starts_with("http://127.0.0.1:"));
        let mut proxies = vec![addr_of(&endpoint)];
        if let Some(m) = &moto_endpoint {
            proxies.push(addr_of(m));
        }
        let scope = IamScope {
            id: unique_id("scope"),
            proxies,
            endpoint,
            moto_endpoint,
            client,
            batch_job: new_credentials(),
            setup: Mutex::new(setup),
        };
        scope.register();
        scope
    }

    /// The enforcing proxy in front of MiniStack: the client's `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// The enforcing proxy in front of moto (AWS Batch), when the world has one.
    pub fn moto_endpoint(&self) -> Option<String> {
        self.moto_endpoint.clone()
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The client principal's keys.
    pub fn client(&self) -> &Credentials {
        &self.client
    }

    /// `KEYID:SECRET` for AWS Batch jobs (the client's test-only
    /// `RUN_RENDER_TEST_JOB_CREDENTIALS`, see tests/world/README.md).
    pub fn batch_job_credentials(&self) -> String {
        format!("{}:{}", self.batch_job.key_id, self.batch_job.secret)
    }

    /// The environment that makes an AWS client this scope's client principal, talking to
    /// MiniStack through the enforcing proxy.
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.client.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.client.secret.clone()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
        ]
    }

    /// Make `cmd` run as this scope's client (env above; no session token or profile).
    pub fn apply(&self, cmd: &mut Command) {
        cmd.envs(self.client_env())
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE");
    }

    /// The current setup (buckets, policies).
    pub fn setup(&self) -> ScopeSetup {
        self.lock().clone()
    }

    /// Change the setup and register it again (instances bound so far and denials stay).
    pub fn update(&self, change: impl FnOnce(&mut ScopeSetup)) {
        change(&mut self.lock());
        self.register();
    }

    pub fn allow_input_bucket(&self, bucket: &str) {
        self.update(|s| s.input_buckets.push(bucket.to_string()));
    }

    pub fn allow_output_bucket(&self, bucket: &str) {
        self.update(|s| s.output_buckets.push(bucket.to_string()));
    }

    /// Add a fault rule at the world's proxy in front of MiniStack, where this scope's
    /// instances send every call, their instance metadata (IMDS) included: e.g. AWS's spot
    /// interruption notice for one instance, matched by its own metadata path
    /// (`path_contains("/_imds/<instance id>/latest/meta-data/spot/instance-action")`).
    /// Every test of the world shares that proxy, and a rule stays until the proxy restarts:
    /// match only what is this test's own (an instance id).
    pub fn add_rule(&self, rule: &crate::Rule) {
        assert!(
            rule.has_fault(),
            "Rule::on({:?}) has no fault: add .respond(), .error(), ...",
            rule.action()
        );
        let body = Value::Array(vec![rule.to_json()]).to_string();
        let proxy = self.proxies[0];
        let (status, answer) = self.control(proxy, "POST", "/_faults/rules", Some(&body));
        assert_eq!(
            status, 200,
            "IAM proxy {proxy} refused rule {body}: {answer}"
        );
    }

    /// Every call of this scope's principals the proxies refused so far.
    pub fn denials(&self) -> Vec<Denial> {
        let path = format!("/_iam/scopes/{}/denials", self.id);
        self.proxies
            .iter()
            .flat_map(|p| match self.control(*p, "GET", &path, None) {
                (200, Value::Array(items)) => items.iter().map(parse_denial).collect::<Vec<_>>(),
                (status, body) => panic!("IAM proxy {p}: GET {path} answered {status}: {body}"),
            })
            .collect()
    }

    /// The denials so far, forgotten by the proxies (for a test that expects some).
    pub fn take_denials(&self) -> Vec<Denial> {
        let out = self.denials();
        let path = format!("/_iam/scopes/{}/denials", self.id);
        for p in &self.proxies {
            self.control(*p, "DELETE", &path, None);
        }
        out
    }

    /// Panic listing every refused call, if any.
    pub fn assert_no_denials(&self) {
        let d = self.denials();
        assert!(
            d.is_empty(),
            "the shipped IAM policies refused {} call(s):\n{}",
            d.len(),
            d.iter()
                .map(|d| format!("  {d}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    /// How many calls of `principal` (`client`, `instance`, `batch-job`) the proxies
    /// evaluated, allowed or not: proof that a test's calls really went through enforcement.
    pub fn evaluated(&self, principal: &str) -> u64 {
        self.summaries()
            .iter()
            .filter_map(|s| s["evaluated"][principal].as_object())
            .flat_map(|m| m.values())
            .filter_map(Value::as_u64)
            .sum()
    }

    /// The instances the proxies bound to this scope (launched with its client key).
    pub fn instances(&self) -> Vec<String> {
        self.summaries()
            .iter()
            .filter_map(|s| s["instances"].as_array().cloned())
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    }

    fn summaries(&self) -> Vec<Value> {
        let path = format!("/_iam/scopes/{}", self.id);
        self.proxies
            .iter()
            .map(|p| match self.control(*p, "GET", &path, None) {
                (200, v) => v,
                (status, body) => panic!("IAM proxy {p}: GET {path} answered {status}: {body}"),
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ScopeSetup> {
        self.setup.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self) {
        let body = self.registration().to_string();
        let path = format!("/_iam/scopes/{}", self.id);
        for p in &self.proxies {
            let (status, answer) = self.control(*p, "PUT", &path, Some(&body));
            assert_eq!(
                status, 200,
                "IAM proxy {p} refused scope {}: {answer}",
                self.id
            );
        }
    }

    fn registration(&self) -> Value {
        let s = self.lock();
        json!({
            "account": s.account,
            "values": {
                "ACCOUNT_ID": s.account,
                "INSTANCE_ROLE_NAME": s.instance_role,
                "QUEUE_NAME": s.queue,
                "INPUT_BUCKET": s.input_buckets,
                "OUTPUT_BUCKET": s.output_buckets,
            },
            "principals": {
                "client": {"keys": [self.client.key_id], "policies": s.client_policies},
                "instance": {"policies": s.instance_policies},
                "batch-job": {"keys": [self.batch_job.key_id], "policies": s.batch_job_policies},
            },
        })
    }

    fn control(
        &self,
        proxy: SocketAddr,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        match control::request(proxy, method, path, body, CONTROL_TIMEOUT) {
            Ok((status, text)) => (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            ),
            Err(e) => panic!(
                "IAM proxy {proxy}: {method} {path} failed: {e} (is the world up? \
                 tests/world/setup.sh starts it; its log is .world/iam-proxy-{}.log)",
                proxy.port()
            ),
        }
    }
}

impl Default for IamScope {
    fn default() -> Self {
        IamScope::new()
    }
}

impl Drop for IamScope {
    fn drop(&mut self) {
        let path = format!("/_iam/scopes/{}", self.id);
        for p in &self.proxies {
            let _ = control::request(*p, "DELETE", &path, None, CONTROL_TIMEOUT);
        }
    }
}

fn world_url(var: &str) -> String {
    match std::env::var(var) {
        Ok(u) if u.starts_with("http://127.0.0.1:") => u.trim_end_matches('/').to_string(),
        _ => panic!(
            "IamScope: {var} must name the world's IAM proxy (http://127.0.0.1:PORT): run \
             tests/world/setup.sh && source .world/env"
        ),
    }
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("IamScope: {url} is not http://127.0.0.1:PORT: {e}"))
}

/// Letters and digits for key ids (base32's alphabet, as AWS's).
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn random_word(len: usize) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let mut out = String::with_capacity(len);
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u32(N.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    let mut bits = h.finish();
    for i in 0..len {
        if i % 12 == 11 {
            h.write_u64(bits);
            bits = h.finish();
        }
        out.push(ALPHABET[(bits & 31) as usize] as char);
        bits >>= 5;
    }
    out
}

/// `AKIARTB` + 13 characters: 20 like AWS's, never 12 digits (MiniStack would take those
/// as another account).
fn new_credentials() -> Credentials {
    Credentials {
        key_id: format!("AKIARTB{}", random_word(13)),
        secret: random_word(40),
    }
}

fn unique_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        random_word(10).to_lowercase()
    )
}

fn parse_denial(v: &Value) -> Denial {
    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Denial {
        principal: text("principal"),
        key_id: text("key"),
        service: text("service"),
        call: text("call"),
        action: text("action"),
        resource: text("resource"),
        reason: text("reason"),
        path: text("path"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_look_like_aws_keys_and_differ() {
        let a = new_credentials();
        let b = new_credentials();
        assert_eq!(a.key_id.len(), 20);
        assert!(a.key_id.starts_with("AKIARTB"));
        assert!(a
            .key_id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
        assert_ne!(a.key_id, b.key_id);
        assert_eq!(a.secret.len(), 40);
    }

    #[test]
    fn denial_from_json() {
        let d = parse_denial(
            &json!({"principal": "client", "key": "AKIA", "service": "ec2",
            "call": "CreateTags", "action": "ec2:CreateTags", "resource": "arn:x",
            "reason": "no statement allows", "path": "/"}),
        );
        assert_eq!(d.call, "CreateTags");
        assert!(d
            .to_string()
            .contains("client ec2:CreateTags refused: ec2:CreateTags on arn:x"));
    }
}
