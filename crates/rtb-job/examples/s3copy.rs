//! The runner's copy engine on its own, for bench/s3-copy.sh and for trying flags by hand:
//!
//! ```text
//! s3copy download s3://bucket/prefix DIR [FLAGS...]
//! s3copy upload DIR s3://bucket/prefix [FLAGS...]
//! ```
//! FLAGS are `aws s3 cp` flags as INPUT_FLAGS / OUTPUT_FLAGS take them (`--recursive`,
//! `--exclude PATTERN`, ...). Tuning for benchmarks: S3COPY_REQUESTS (requests in flight),
//! S3COPY_PART_MIB (part size), S3COPY_THRESHOLD_MIB (multipart threshold).

use std::path::PathBuf;
use std::process::ExitCode;

use rtb_job::transfer::{s3_client, CopyOptions, Limits, Transfers};
use rtb_model::S3Url;

const USAGE: &str = "usage: s3copy download s3://bucket/prefix DIR [FLAGS...]\n       s3copy upload DIR s3://bucket/prefix [FLAGS...]";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("s3copy: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        return Err(USAGE.to_string());
    }
    let flags = shlex::try_join(args[3..].iter().map(String::as_str)).map_err(|e| e.to_string())?;
    let opts = CopyOptions::parse("FLAGS", &flags).map_err(|e| e.to_string())?;
    let transfers = Transfers::new(s3_client().await).with_limits(limits()?);
    let log = |line: String| eprintln!("{line}");
    match args[0].as_str() {
        "download" => {
            let src: S3Url = args[1].parse().map_err(|e| format!("{e}"))?;
            transfers
                .download(&src, &PathBuf::from(&args[2]), &opts, &log)
                .await
                .map_err(|e| e.to_string())?;
        }
        "upload" => {
            let dest: S3Url = args[2].parse().map_err(|e| format!("{e}"))?;
            let up = transfers
                .upload(&PathBuf::from(&args[1]), &dest, &opts, &log)
                .await
                .map_err(|e| e.to_string())?;
            if !up.skipped.is_empty() {
                return Err(format!("{} files were not uploaded", up.skipped.len()));
            }
        }
        _ => return Err(USAGE.to_string()),
    }
    Ok(())
}

fn limits() -> Result<Limits, String> {
    let mut limits = Limits::default();
    let var = |name: &str| -> Result<Option<u64>, String> {
        match std::env::var(name) {
            Ok(v) => v
                .parse()
                .map(Some)
                .map_err(|_| format!("{name}={v} is not a whole number")),
            Err(_) => Ok(None),
        }
    };
    if let Some(n) = var("S3COPY_REQUESTS")? {
        limits.requests_in_flight = n as usize;
    }
    if let Some(n) = var("S3COPY_PART_MIB")? {
        limits.part_size = n << 20;
    }
    if let Some(n) = var("S3COPY_THRESHOLD_MIB")? {
        limits.multipart_threshold = n << 20;
    }
    Ok(limits)
}
