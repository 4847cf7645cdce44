//! Helpers for tests against the local S3 (MiniStack): the client, a fresh bucket per test, and
//! plain put/get/list that do not go through the code under test.
#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

/// The emulator's endpoint; the tests never run against a default (real) AWS endpoint.
pub fn endpoint() -> String {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(e) if !e.is_empty() => e,
        _ => panic!(
            "AWS_ENDPOINT_URL is not set: start the test world: tests/world/setup.sh && source .world/env"
        ),
    }
}

/// Dummy credentials and region unless the environment has them, so the production
/// constructor (`s3_client`, default chain) is the one under test.
fn ensure_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        endpoint();
        for (name, value) in [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ] {
            if std::env::var_os(name).is_none() {
                // Every test calls this before any SDK code reads the environment, and the Once
                // holds the other test threads until it is done.
                std::env::set_var(name, value);
            }
        }
        // A stray profile or IMDS lookup would only slow the tests down.
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    });
}

/// The S3 client the runner uses (default chain, path style for a custom endpoint).
pub async fn client() -> Client {
    ensure_env();
    rtb_job::transfer::s3_client().await
}

/// A bucket of its own for one test: `<prefix>-<pid>-<n>-<nanos>`.
pub async fn unique_bucket(client: &Client, prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut name = format!(
        "{}-{}-{}-{nanos}",
        prefix.to_ascii_lowercase(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    name.truncate(63);
    let name = name.trim_end_matches('-').to_string();
    client
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "create bucket {name}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            )
        });
    name
}

/// Delete a test's bucket and everything in it (the emulator keeps objects in memory). Tests
/// call it at the end; a failing test leaves its bucket for a look.
pub async fn remove_bucket(client: &Client, bucket: &str) {
    use aws_sdk_s3::types::{Delete, ObjectIdentifier};
    let keys = list(client, bucket, "").await;
    for batch in keys.chunks(1000) {
        let objects = batch
            .iter()
            .map(|(k, _)| {
                ObjectIdentifier::builder()
                    .key(k)
                    .build()
                    .expect("key is set")
            })
            .collect();
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .build()
            .expect("objects set");
        client
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "empty {bucket}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
    }
    client
        .delete_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "delete {bucket}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            )
        });
}

pub async fn put(client: &Client, bucket: &str, key: &str, bytes: impl Into<Vec<u8>>) {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(bytes.into()))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "put s3://{bucket}/{key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            )
        });
}

pub async fn get(client: &Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "get s3://{bucket}/{key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            )
        });
    out.body
        .collect()
        .await
        .unwrap_or_else(|e| panic!("read s3://{bucket}/{key}: {e}"))
        .to_vec()
}

/// Every key below `prefix` with its size, sorted, following continuation tokens.
pub async fn list(client: &Client, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    let mut keys = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.unwrap_or_else(|e| {
            panic!(
                "list s3://{bucket}/{prefix}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            )
        });
        for o in page.contents() {
            keys.push((
                o.key().unwrap_or_default().to_string(),
                o.size().unwrap_or(0) as u64,
            ));
        }
    }
    keys.sort();
    keys
}

/// Deterministic pseudo-random bytes (xorshift64*): incompressible, no extra dependency.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn md5_hex(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    format!("{:x}", Md5::digest(bytes))
}

/// Every regular file below `root`: relative path (with `/`) -> contents, sorted.
pub fn read_tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).expect("below root");
                let rel = rel.to_str().expect("utf-8 name").replace('\\', "/");
                out.push((rel, std::fs::read(&path).expect("read file")));
            }
        }
    }
    out.sort();
    out
}

/// Write `files` (relative path -> contents) below `root`, creating folders.
pub fn write_tree(root: &Path, files: &[(&str, Vec<u8>)]) {
    for (rel, bytes) in files {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create folder");
        }
        std::fs::write(&path, bytes).expect("write file");
    }
}

/// A log sink that keeps the lines, for assertions.
#[derive(Default)]
pub struct Lines(pub Mutex<Vec<String>>);

impl Lines {
    pub fn sink(&self) -> impl Fn(String) + Send + Sync + '_ {
        move |line| self.0.lock().expect("lines lock").push(line)
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("lines lock"))
    }
}

/// An S3 client through `endpoint` (path style), with the SDK's own response checksums off so
/// that only the engine's checks stand between a damaged body and the disk.
pub async fn client_via(endpoint: &str) -> Client {
    ensure_env();
    let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let config = aws_sdk_s3::config::Builder::from(&shared)
        .endpoint_url(endpoint)
        .force_path_style(true)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    Client::from_conf(config)
}

/// An upload's counts, after checking that nothing was skipped.
pub fn complete(up: rtb_job::transfer::Uploaded) -> rtb_model::Transfer {
    assert!(up.skipped.is_empty(), "skipped: {:?}", up.skipped);
    up.copied
}

/// The runner's S3 client (as `s3_client` builds it) with its endpoint set to `endpoint`.
pub async fn runner_client_via(endpoint: &str) -> Client {
    ensure_env();
    let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let config = aws_sdk_s3::config::Builder::from(&shared)
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    Client::from_conf(config)
}

/// The `rtb-job` binary for one job in `dir` (`in/` and `out/` scratch folders), Octave, and
/// S3 at `endpoint`; only the contract variables the caller sets.
pub fn runner(endpoint: &str, dir: &Path) -> std::process::Command {
    ensure_env();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rtb-job"));
    for var in rtb_model::contract::ALL {
        cmd.env_remove(var.name);
    }
    cmd.env("MATLAB_EXECUTABLE", "octave-cli")
        .env("INPUT_SCRATCH", dir.join("in"))
        .env("OUTPUT_SCRATCH", dir.join("out"))
        .env("MOUNT_SCRATCH", dir.join("mnt"))
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(std::process::Stdio::null());
    cmd
}
