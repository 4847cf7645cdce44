//! Where the runner runs: the EC2 instance's id, for the result record (the batch page's
//! timeline has one row per instance; on AWS Batch only the runner can tell which instance a
//! job ran on). Best effort: a runner that is not on EC2 records none, and never waits long.
//!
//! The instance metadata is asked only where there is one: on EC2 (the machine says so in its
//! DMI or hypervisor files, readable from a container) or where `AWS_EC2_METADATA_SERVICE_ENDPOINT`
//! points (a test world). `AWS_EC2_METADATA_DISABLED=true` turns it off, as for the SDK.

use std::time::Duration;

/// The whole lookup, token included, takes at most this long.
const LOOKUP_LIMIT: Duration = Duration::from_secs(3);

const DMI_VENDOR: &str = "/sys/devices/virtual/dmi/id/sys_vendor";
const DMI_BOARD_ASSET_TAG: &str = "/sys/devices/virtual/dmi/id/board_asset_tag";
const XEN_UUID: &str = "/sys/hypervisor/uuid";

/// What the machine's files say about it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Signs {
    pub metadata_disabled: bool,
    pub metadata_endpoint: bool,
    pub dmi_vendor: Option<String>,
    pub board_asset_tag: Option<String>,
    pub xen_uuid: Option<String>,
}

/// How the instance id is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Nitro instances carry their id as the board's asset tag.
    Known(String),
    AskMetadata,
    NotOnEc2,
}

/// Decide from the signs alone (no network).
pub fn lookup(s: &Signs) -> Lookup {
    if s.metadata_disabled {
        return Lookup::NotOnEc2;
    }
    if s.metadata_endpoint {
        return Lookup::AskMetadata;
    }
    if let Some(tag) = s.board_asset_tag.as_deref().map(str::trim) {
        if tag.starts_with("i-") && tag.len() > 2 && tag[2..].chars().all(|c| c.is_ascii_hexdigit())
        {
            return Lookup::Known(tag.to_string());
        }
    }
    let vendor = s
        .dmi_vendor
        .as_deref()
        .is_some_and(|v| v.trim() == "Amazon EC2");
    let xen = s
        .xen_uuid
        .as_deref()
        .is_some_and(|u| u.trim().to_ascii_lowercase().starts_with("ec2"));
    if vendor || xen {
        Lookup::AskMetadata
    } else {
        Lookup::NotOnEc2
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn signs() -> Signs {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    Signs {
        metadata_disabled: std::env::var("AWS_EC2_METADATA_DISABLED")
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true")),
        metadata_endpoint: set("AWS_EC2_METADATA_SERVICE_ENDPOINT"),
        dmi_vendor: read(DMI_VENDOR),
        board_asset_tag: read(DMI_BOARD_ASSET_TAG),
        xen_uuid: read(XEN_UUID),
    }
}

/// The id of the EC2 instance this runs on, or None.
pub async fn instance_id() -> Option<String> {
    match lookup(&signs()) {
        Lookup::Known(id) => Some(id),
        Lookup::NotOnEc2 => None,
        Lookup::AskMetadata => {
            let client = aws_config::imds::Client::builder()
                .max_attempts(1)
                .connect_timeout(Duration::from_secs(1))
                .read_timeout(Duration::from_secs(1))
                .build();
            let got =
                tokio::time::timeout(LOOKUP_LIMIT, client.get("/latest/meta-data/instance-id"))
                    .await;
            match got {
                Ok(Ok(id)) => {
                    let id = id.as_ref().trim().to_string();
                    id.starts_with("i-").then_some(id)
                }
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_is_asked_only_on_ec2() {
        let on = |f: fn(&mut Signs)| {
            let mut s = Signs::default();
            f(&mut s);
            lookup(&s)
        };
        assert_eq!(on(|_| {}), Lookup::NotOnEc2);
        assert_eq!(
            on(|s| s.dmi_vendor = Some("Amazon EC2\n".into())),
            Lookup::AskMetadata
        );
        assert_eq!(
            on(|s| s.dmi_vendor = Some("QEMU\n".into())),
            Lookup::NotOnEc2
        );
        assert_eq!(
            on(|s| s.xen_uuid = Some("EC2e1916-9099-7caf-fd21-012345abcdef\n".into())),
            Lookup::AskMetadata
        );
        assert_eq!(
            on(|s| s.board_asset_tag = Some("i-0123456789abcdef0\n".into())),
            Lookup::Known("i-0123456789abcdef0".into())
        );
        assert_eq!(
            on(|s| s.board_asset_tag = Some("Not Specified".into())),
            Lookup::NotOnEc2
        );
        assert_eq!(on(|s| s.metadata_endpoint = true), Lookup::AskMetadata);
        assert_eq!(
            on(|s| {
                s.metadata_endpoint = true;
                s.dmi_vendor = Some("Amazon EC2".into());
                s.metadata_disabled = true;
            }),
            Lookup::NotOnEc2
        );
    }
}
