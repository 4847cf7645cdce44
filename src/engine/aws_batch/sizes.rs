//! What a job asks AWS Batch for: vCPUs and memory, from an instance type of a small built-in
//! table or given explicitly. Pure.
//!
//! A job sized as "one whole m5.xlarge" must still fit *on* an m5.xlarge: ECS registers a bit
//! less memory than the type's nominal size (the kernel and the ECS agent keep some), and a job
//! that asks for the nominal figure stays RUNNABLE forever. So the memory derived from a type is
//! [`USABLE_MEMORY_PERCENT`] of it, rounded down to 256 MiB.

/// vCPUs and memory of one instance type, or of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Size {
    pub vcpus: u32,
    pub memory_mib: u32,
}

/// Share of an instance type's memory a job sized from it asks for. AWS's own guidance
/// ("memory management" in the AWS Batch user guide) shows e.g. ~7,600 of 8,192 MiB usable on
/// an 8 GiB type; 90 % leaves a margin on every size of the table.
pub const USABLE_MEMORY_PERCENT: u32 = 90;

const GIB: u32 = 1024;

/// (family, [(size, vCPUs, GiB)]): the general-purpose (m), compute (c) and memory (r) types a
/// lab is most likely to render on. Others can be given as explicit vCPUs and memory.
const FAMILIES: &[(&str, u32)] = &[
    // (family, GiB per vCPU)
    ("m5", 4),
    ("m6i", 4),
    ("m7i", 4),
    ("c5", 2),
    ("c6i", 2),
    ("c7i", 2),
    ("r5", 8),
    ("r6i", 8),
];

/// (size suffix, vCPUs). `c5` has no 32xlarge and tops out differently: see [`exceptions`].
const SIZES: &[(&str, u32)] = &[
    ("large", 2),
    ("xlarge", 4),
    ("2xlarge", 8),
    ("4xlarge", 16),
    ("8xlarge", 32),
    ("12xlarge", 48),
    ("16xlarge", 64),
    ("24xlarge", 96),
    ("32xlarge", 128),
];

/// Types whose shape breaks the family's rule: (type, vCPUs, GiB), or vCPUs 0 when the type
/// does not exist.
fn exceptions(name: &str) -> Option<(u32, u32)> {
    Some(match name {
        // c5's larger sizes are 9/18/36 xlarge with 2 GiB per vCPU.
        "c5.9xlarge" => (36, 72),
        "c5.12xlarge" => (48, 96),
        "c5.18xlarge" => (72, 144),
        "c5.24xlarge" => (96, 192),
        "c5.8xlarge" | "c5.16xlarge" | "c5.32xlarge" => (0, 0),
        // m5 and r5 stop at 24xlarge.
        "m5.32xlarge" | "r5.32xlarge" => (0, 0),
        _ => return None,
    })
}

/// The nominal size of an instance type of the table, or `None` for one it does not know.
pub fn instance_size(instance_type: &str) -> Option<Size> {
    let name = instance_type.trim().to_ascii_lowercase();
    if let Some((vcpus, gib)) = exceptions(&name) {
        return (vcpus > 0).then_some(Size {
            vcpus,
            memory_mib: gib * GIB,
        });
    }
    let (family, size) = name.split_once('.')?;
    let (_, gib_per_vcpu) = FAMILIES.iter().find(|(f, _)| *f == family)?;
    let (_, vcpus) = SIZES.iter().find(|(s, _)| *s == size)?;
    Some(Size {
        vcpus: *vcpus,
        memory_mib: vcpus * gib_per_vcpu * GIB,
    })
}

/// What a job sized as one whole `instance_type` asks for (see [`USABLE_MEMORY_PERCENT`]).
pub fn job_size_for(instance_type: &str) -> Option<Size> {
    instance_size(instance_type).map(|s| Size {
        vcpus: s.vcpus,
        memory_mib: usable_memory(s.memory_mib),
    })
}

fn usable_memory(nominal_mib: u32) -> u32 {
    let usable = (u64::from(nominal_mib) * u64::from(USABLE_MEMORY_PERCENT) / 100) as u32;
    usable / 256 * 256
}

/// Why a job size could not be worked out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("instance type '{0}' is not in the built-in table (m5, m6i, m7i, c5, c6i, c7i, r5, r6i): give vcpus and memory-mib instead")]
    UnknownType(String),
    #[error("give either an instance type or both vcpus and memory-mib")]
    Missing,
    #[error("{0} must be at least 1")]
    Zero(&'static str),
}

/// The job's size: explicit values win (each one alone overrides the type's), else the type's.
pub fn job_size(
    instance_type: Option<&str>,
    vcpus: Option<u32>,
    memory_mib: Option<u32>,
) -> Result<Size, SizeError> {
    let from_type = instance_type
        .map(|t| job_size_for(t).ok_or_else(|| SizeError::UnknownType(t.to_string())))
        .transpose()?;
    let vcpus = vcpus
        .or(from_type.map(|s| s.vcpus))
        .ok_or(SizeError::Missing)?;
    let memory_mib = memory_mib
        .or(from_type.map(|s| s.memory_mib))
        .ok_or(SizeError::Missing)?;
    if vcpus == 0 {
        return Err(SizeError::Zero("vcpus"));
    }
    if memory_mib == 0 {
        return Err(SizeError::Zero("memory-mib"));
    }
    Ok(Size { vcpus, memory_mib })
}

/// Whether one instance of `instance_type` can hold a job of `size`. Compute environments may
/// name a family ("m5") or "optimal": those are taken as fitting (AWS picks a size that does),
/// as are types the table does not know (`None`: cannot tell).
pub fn fits(instance_type: &str, size: Size) -> Option<bool> {
    let t = instance_type.trim().to_ascii_lowercase();
    if t == "optimal" || !t.contains('.') {
        return Some(true);
    }
    let nominal = instance_size(&t)?;
    Some(nominal.vcpus >= size.vcpus && usable_memory(nominal.memory_mib) >= size.memory_mib)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_knows_common_types_and_their_exceptions() {
        let cases = [
            ("m5.large", Some((2, 8))),
            ("m5.xlarge", Some((4, 16))),
            ("M6I.8XLARGE", Some((32, 128))),
            ("m6i.32xlarge", Some((128, 512))),
            ("c5.9xlarge", Some((36, 72))),
            ("c5.8xlarge", None),
            ("c6i.4xlarge", Some((16, 32))),
            ("r5.2xlarge", Some((8, 64))),
            ("r5.32xlarge", None),
            ("g5.xlarge", None),
            ("m5", None),
        ];
        for (t, want) in cases {
            let got = instance_size(t).map(|s| (s.vcpus, s.memory_mib / GIB));
            assert_eq!(got, want, "{t}");
        }
    }

    #[test]
    fn a_job_sized_from_a_type_fits_on_that_type() {
        let s = job_size_for("m5.large").unwrap();
        assert_eq!(
            s,
            Size {
                vcpus: 2,
                memory_mib: 7168
            }
        );
        for (family, _) in FAMILIES {
            for (size, _) in SIZES {
                let t = format!("{family}.{size}");
                if let Some(job) = job_size_for(&t) {
                    assert_eq!(fits(&t, job), Some(true), "{t}");
                    assert!(job.memory_mib % 256 == 0, "{t}");
                }
            }
        }
    }

    #[test]
    fn explicit_values_override_the_type() {
        assert_eq!(
            job_size(Some("c5.xlarge"), None, Some(2048)),
            Ok(Size {
                vcpus: 4,
                memory_mib: 2048
            })
        );
        assert_eq!(
            job_size(None, Some(1), Some(512)),
            Ok(Size {
                vcpus: 1,
                memory_mib: 512
            })
        );
        assert_eq!(job_size(None, Some(1), None), Err(SizeError::Missing));
        assert_eq!(
            job_size(Some("x1.large"), None, None),
            Err(SizeError::UnknownType("x1.large".into()))
        );
        assert_eq!(
            job_size(None, Some(0), Some(1)),
            Err(SizeError::Zero("vcpus"))
        );
    }

    #[test]
    fn fitting_takes_families_and_optimal_as_fitting() {
        let big = Size {
            vcpus: 8,
            memory_mib: 28_000,
        };
        assert_eq!(fits("m5.2xlarge", big), Some(true));
        assert_eq!(fits("c5.2xlarge", big), Some(false));
        assert_eq!(fits("m5.xlarge", big), Some(false));
        assert_eq!(fits("optimal", big), Some(true));
        assert_eq!(fits("m5", big), Some(true));
        assert_eq!(fits("g5.xlarge", big), None);
    }
}
