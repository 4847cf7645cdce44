//! MOUNT_BUCKET: an S3 prefix mounted as a folder with mount-s3 (Mountpoint for Amazon S3),
//! the successor of the yas3fs FUSE mount the original used. Good for lazy reads of large
//! inputs; outputs should go through OUTPUT_BUCKET, which is copied after the command.

use std::path::PathBuf;

use rtb_model::S3Url;
use tokio::process::Command;

pub const MOUNT_S3: &str = "mount-s3";

/// A bucket mount, ready to run (built by `settings`).
#[derive(Debug, Clone)]
pub struct Mount {
    pub bucket: S3Url,
    pub point: PathBuf,
    pub flags: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("MOUNT_BUCKET: cannot run {MOUNT_S3}: {0}")]
    Spawn(std::io::Error),
    #[error("MOUNT_BUCKET: {MOUNT_S3} could not mount {bucket} at {point}: {stderr}")]
    Failed {
        bucket: String,
        point: String,
        stderr: String,
    },
}

/// The mount-s3 arguments for a mount. The endpoint and region come from the same variables
/// the SDK reads, so a custom S3 endpoint works for mounts as it does for copies.
pub fn args(m: &Mount) -> Vec<String> {
    let mut args = vec![m.bucket.bucket().to_string(), m.point.display().to_string()];
    let prefix = m.bucket.dir_prefix();
    if !prefix.is_empty() {
        args.extend(["--prefix".to_string(), prefix]);
    }
    if let Ok(endpoint) =
        std::env::var("AWS_ENDPOINT_URL_S3").or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
    {
        args.extend([
            "--endpoint-url".to_string(),
            endpoint,
            "--force-path-style".to_string(),
        ]);
    }
    if let Ok(region) = std::env::var("AWS_REGION").or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
    {
        args.extend(["--region".to_string(), region]);
    }
    args.extend(m.flags.iter().cloned());
    args
}

/// A mounted bucket; unmount it when the command is done.
pub struct Mounted {
    point: PathBuf,
}

/// Mount the bucket; mount-s3 returns once the mount is ready.
pub async fn mount(m: &Mount) -> Result<Mounted, MountError> {
    let out = Command::new(MOUNT_S3)
        .args(args(m))
        .output()
        .await
        .map_err(MountError::Spawn)?;
    if !out.status.success() {
        return Err(MountError::Failed {
            bucket: m.bucket.to_string(),
            point: m.point.display().to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(Mounted {
        point: m.point.clone(),
    })
}

impl Mounted {
    /// Unmount; a failure is reported, not fatal: the job's outputs matter more.
    pub async fn unmount(self) -> Result<(), String> {
        for (tool, args) in [
            ("fusermount3", vec!["-u"]),
            ("fusermount", vec!["-u"]),
            ("umount", vec![]),
        ] {
            let status = Command::new(tool)
                .args(&args)
                .arg(&self.point)
                .status()
                .await;
            if let Ok(s) = status {
                if s.success() {
                    return Ok(());
                }
            }
        }
        Err(format!("could not unmount {}", self.point.display()))
    }
}
