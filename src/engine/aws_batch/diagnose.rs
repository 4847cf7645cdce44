//! AWS Batch's best-known trap: jobs that stay RUNNABLE (ready, never placed). Given what was
//! fetched about the queue and its compute environments, name the likely cause. Pure.

use std::time::Duration;

use super::sizes::{fits, instance_size, Size};

/// RUNNABLE for less than this is normal: a managed compute environment scaling from zero takes
/// a few minutes to launch an instance and for its ECS agent to register.
pub const RUNNABLE_PATIENCE: Duration = Duration::from_secs(10 * 60);

/// The queue, as DescribeJobQueues reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueFacts {
    pub name: String,
    pub enabled: bool,
    pub valid: bool,
    pub status_reason: Option<String>,
    /// `arn:<partition>:batch:<region>:<account>:job-queue/<name>`.
    pub arn: Option<String>,
}

/// One compute environment of the queue, as DescribeComputeEnvironments reports it (and, when
/// fetched, how many ECS container instances its cluster has registered).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvironmentFacts {
    pub name: String,
    pub enabled: bool,
    pub valid: bool,
    pub status_reason: Option<String>,
    pub instance_types: Vec<String>,
    pub max_vcpus: Option<u32>,
    pub desired_vcpus: Option<u32>,
    pub spot: bool,
    /// Registered ECS container instances, when known.
    pub container_instances: Option<usize>,
    /// The AMIs its instances start from (its EC2 configurations' image overrides, or its
    /// resources' image id); empty: AWS's ECS-optimized default.
    pub amis: Vec<String>,
    /// The ECS cluster its instances join (where a job's container instance is looked up).
    pub ecs_cluster: Option<String>,
}

/// What was fetched about one RUNNABLE job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnableFacts {
    pub runnable_for: Duration,
    pub size: Size,
    /// `None`: the queue does not exist (any more).
    pub queue: Option<QueueFacts>,
    pub environments: Vec<EnvironmentFacts>,
}

/// The likely cause, most specific first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    QueueMissing,
    QueueDisabled {
        queue: String,
    },
    QueueInvalid {
        queue: String,
        reason: String,
    },
    NoEnvironment {
        queue: String,
    },
    EnvironmentsUnusable {
        detail: String,
    },
    /// No instance type of any usable environment can hold the job.
    TooBig {
        asked: Size,
        largest: Option<Size>,
    },
    /// Every environment that could place it is at its max vCPUs: other jobs hold the capacity.
    AtMaxVcpus {
        detail: String,
    },
    /// Instances were asked for, none registered with ECS.
    EcsAgent {
        environment: String,
    },
    /// No instance was launched at all.
    NoCapacity {
        environment: String,
        spot: bool,
    },
    Unknown,
}

impl Cause {
    /// The one line `status` prints, with what to do.
    pub fn advice(&self) -> String {
        match self {
            Cause::QueueMissing => "the job queue no longer exists: run `run-render aws-batch setup` again".into(),
            Cause::QueueDisabled { queue } => format!("job queue {queue} is DISABLED: enable it (aws batch update-job-queue --job-queue {queue} --state ENABLED)"),
            Cause::QueueInvalid { queue, reason } => format!("job queue {queue} is INVALID: {reason}"),
            Cause::NoEnvironment { queue } => format!("job queue {queue} has no compute environment: run `run-render aws-batch setup`"),
            Cause::EnvironmentsUnusable { detail } => format!("no compute environment of the queue can run jobs: {detail}"),
            Cause::TooBig { asked, largest } => {
                let largest = largest
                    .map(|l| format!("the largest is {} vCPU / {} MiB", l.vcpus, l.memory_mib))
                    .unwrap_or_else(|| "none is known".into());
                format!(
                    "the job asks for {} vCPU / {} MiB and no instance type of the compute environment fits it ({largest}; ECS keeps some memory): lower vcpus / memory-mib, or add a larger type",
                    asked.vcpus, asked.memory_mib
                )
            }
            Cause::AtMaxVcpus { detail } => format!("capacity: {detail}; the job waits for running jobs to end (raise max vCPUs to run more at once)"),
            Cause::EcsAgent { environment } => format!(
                "compute environment {environment} launched instances but none registered with ECS: check the AMI's ECS agent (ecs.service enabled, /etc/ecs/ecs.config), the instance role (AmazonEC2ContainerServiceforEC2Role) and the subnets' route to the ECS endpoint"
            ),
            Cause::NoCapacity { environment, spot } => format!(
                "compute environment {environment} has not launched any instance: {}check the account's EC2 vCPU quota, the subnets and the service role (its Auto Scaling / EC2 Fleet activity says why)",
                if *spot { "Spot capacity may be short for these types (add types or subnets, or use on-demand); " } else { "" }
            ),
            Cause::Unknown => "no single cause found: see the compute environment's status and its Auto Scaling activity".into(),
        }
    }
}

/// Why a job that has been RUNNABLE this long is still waiting; `None` while that is normal.
pub fn runnable(f: &RunnableFacts) -> Option<Cause> {
    if f.runnable_for < RUNNABLE_PATIENCE {
        return None;
    }
    let Some(q) = &f.queue else {
        return Some(Cause::QueueMissing);
    };
    if !q.enabled {
        return Some(Cause::QueueDisabled {
            queue: q.name.clone(),
        });
    }
    if !q.valid {
        return Some(Cause::QueueInvalid {
            queue: q.name.clone(),
            reason: q
                .status_reason
                .clone()
                .unwrap_or_else(|| "no reason given".into()),
        });
    }
    if f.environments.is_empty() {
        return Some(Cause::NoEnvironment {
            queue: q.name.clone(),
        });
    }
    let usable: Vec<&EnvironmentFacts> = f
        .environments
        .iter()
        .filter(|e| e.enabled && e.valid)
        .collect();
    if usable.is_empty() {
        let detail = f
            .environments
            .iter()
            .map(|e| {
                let what = if !e.enabled { "DISABLED" } else { "INVALID" };
                match &e.status_reason {
                    Some(r) => format!("{} is {what} ({r})", e.name),
                    None => format!("{} is {what}", e.name),
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Some(Cause::EnvironmentsUnusable { detail });
    }
    // Environments that can hold the job (unknown types count as able: we cannot tell).
    let placing: Vec<&&EnvironmentFacts> = usable
        .iter()
        .filter(|e| {
            e.instance_types.is_empty()
                || e.instance_types
                    .iter()
                    .any(|t| fits(t, f.size) != Some(false))
        })
        .collect();
    if placing.is_empty() {
        let largest = usable
            .iter()
            .flat_map(|e| e.instance_types.iter())
            .filter_map(|t| instance_size(t))
            .max();
        return Some(Cause::TooBig {
            asked: f.size,
            largest,
        });
    }
    let full: Vec<String> = placing
        .iter()
        .filter_map(|e| match (e.desired_vcpus, e.max_vcpus) {
            (Some(d), Some(m)) if d + f.size.vcpus > m => {
                Some(format!("{} uses {d} of its {m} max vCPUs", e.name))
            }
            _ => None,
        })
        .collect();
    if full.len() == placing.len() {
        return Some(Cause::AtMaxVcpus {
            detail: full.join("; "),
        });
    }
    if let Some(e) = placing
        .iter()
        .find(|e| e.desired_vcpus.unwrap_or(0) > 0 && e.container_instances == Some(0))
    {
        return Some(Cause::EcsAgent {
            environment: e.name.clone(),
        });
    }
    if let Some(e) = placing.iter().find(|e| e.desired_vcpus == Some(0)) {
        return Some(Cause::NoCapacity {
            environment: e.name.clone(),
            spot: e.spot,
        });
    }
    Some(Cause::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> EnvironmentFacts {
        EnvironmentFacts {
            name: name.into(),
            enabled: true,
            valid: true,
            instance_types: vec!["m5.xlarge".into()],
            max_vcpus: Some(64),
            desired_vcpus: Some(4),
            container_instances: Some(1),
            ..Default::default()
        }
    }

    fn facts(envs: Vec<EnvironmentFacts>) -> RunnableFacts {
        RunnableFacts {
            runnable_for: Duration::from_secs(30 * 60),
            size: Size {
                vcpus: 2,
                memory_mib: 4096,
            },
            queue: Some(QueueFacts {
                name: "q".into(),
                enabled: true,
                valid: true,
                status_reason: None,
                arn: None,
            }),
            environments: envs,
        }
    }

    fn kind(c: &Option<Cause>) -> String {
        match c {
            None => "none".into(),
            Some(c) => format!("{c:?}")
                .split([' ', '{'])
                .next()
                .unwrap_or_default()
                .to_string(),
        }
    }

    #[test]
    fn each_cause_is_named() {
        type Change = fn(&mut RunnableFacts);
        let cases: &[(&str, Change, &str)] = &[
            (
                "short wait",
                |f| f.runnable_for = Duration::from_secs(60),
                "none",
            ),
            ("no queue", |f| f.queue = None, "QueueMissing"),
            (
                "queue disabled",
                |f| f.queue.as_mut().unwrap().enabled = false,
                "QueueDisabled",
            ),
            (
                "queue invalid",
                |f| f.queue.as_mut().unwrap().valid = false,
                "QueueInvalid",
            ),
            (
                "no environment",
                |f| f.environments.clear(),
                "NoEnvironment",
            ),
            (
                "environment invalid",
                |f| f.environments[0].valid = false,
                "EnvironmentsUnusable",
            ),
            (
                "too big",
                |f| {
                    f.size = Size {
                        vcpus: 4,
                        memory_mib: 16_384,
                    }
                },
                "TooBig",
            ),
            ("too many vcpus", |f| f.size.vcpus = 8, "TooBig"),
            (
                "family fits",
                |f| {
                    f.size.vcpus = 8;
                    f.environments[0].instance_types = vec!["m5".into()]
                },
                "Unknown",
            ),
            (
                "at max",
                |f| f.environments[0].desired_vcpus = Some(64),
                "AtMaxVcpus",
            ),
            (
                "ecs agent",
                |f| f.environments[0].container_instances = Some(0),
                "EcsAgent",
            ),
            (
                "no instance",
                |f| {
                    f.environments[0].desired_vcpus = Some(0);
                    f.environments[0].spot = true
                },
                "NoCapacity",
            ),
            ("all fine", |_| {}, "Unknown"),
        ];
        for (what, change, want) in cases {
            let mut f = facts(vec![env("ce")]);
            change(&mut f);
            let got = runnable(&f);
            assert_eq!(kind(&got), *want, "{what}: {got:?}");
            if let Some(c) = got {
                assert!(!c.advice().is_empty());
            }
        }
    }

    #[test]
    fn one_usable_environment_with_room_is_enough() {
        let mut small = env("small");
        small.instance_types = vec!["c5.large".into()];
        let mut full = env("full");
        full.desired_vcpus = Some(64);
        let f = facts(vec![small, full.clone(), env("ok")]);
        assert_eq!(runnable(&f), Some(Cause::Unknown));
        let f = facts(vec![full]);
        assert!(matches!(runnable(&f), Some(Cause::AtMaxVcpus { .. })));
    }

    #[test]
    fn too_big_names_the_largest_type() {
        let mut f = facts(vec![env("ce")]);
        f.size = Size {
            vcpus: 64,
            memory_mib: 1024,
        };
        let c = runnable(&f).unwrap();
        assert!(
            c.advice().contains("the largest is 4 vCPU / 16384 MiB"),
            "{}",
            c.advice()
        );
    }
}
