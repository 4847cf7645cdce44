//! What an earlier run of a batch left, before this one starts: each job's newest result and
//! what that attempt ran (so `--resume` runs again a row that changed), and the batch's
//! instances still up, with whether their run is provably over. A run still alive in another
//! terminal, or one that may be alive elsewhere (another machine, a colleague with the same
//! user name), keeps its instances: this run refuses to start instead of ending them.

use futures::StreamExt;

use super::jobs::{changed_settings, BatchJob};
use crate::cloud::{Cloud, CloudError, Select, TaggedInstance};
use crate::registry::{Entry, Registry};

/// What an earlier run of the batch left.
pub struct Earlier {
    /// Every job with a result record: (job index, what it came to).
    pub results: Vec<(usize, Done)>,
    /// The batch's instances of this owner still up, and their run's client.
    pub instances: Vec<(String, Client)>,
}

/// A job's newest result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub succeeded: bool,
    /// The settings that differ between what that attempt ran and what its row asks now
    /// (empty when the same, or when the attempt kept no record of them).
    pub changed: Vec<String>,
}

/// Whether the run that an instance belongs to is still alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Client {
    /// Its client runs on this machine.
    Alive { pid: u32 },
    /// Its jobs were started with --detach: they run on with no client.
    Detached,
    /// Its client ran on this machine and has exited.
    Dead,
    /// Nothing here says: its client ran on another machine (`host`, when its run record
    /// says), or it is a colleague's with the same user name.
    Unknown { host: Option<String> },
}

/// The client of an instance's run, from this machine's registry entries that name the
/// instance, and the run's own record (a pool's `run.json`: its client's host and pid).
pub fn client_of(
    entries: &[&Entry],
    run: Option<&rtb_model::records::RunRecord>,
    here: Option<&str>,
    alive: impl Fn(u32) -> bool,
) -> Client {
    let local = |host: Option<&str>| here.is_some() && host == here;
    let mut seen_dead = false;
    for e in entries {
        match e.client_pid {
            Some(pid) if local(e.client_host.as_deref()) => {
                if alive(pid) {
                    return Client::Alive { pid };
                }
                if e.detached && e.ended.is_none() {
                    return Client::Detached;
                }
                seen_dead = true;
            }
            _ => {}
        }
    }
    if let Some(r) = run {
        match r.client_pid {
            Some(pid) if local(r.client_host.as_deref()) => {
                if alive(pid) {
                    return Client::Alive { pid };
                }
                return Client::Dead;
            }
            _ => {
                return Client::Unknown {
                    host: r.client_host.clone(),
                }
            }
        }
    }
    if seen_dead {
        Client::Dead
    } else {
        Client::Unknown { host: None }
    }
}

/// Why this run must not start while the earlier run's instances are up, as one line; None
/// when every one of them belongs to a run that is over (they are ended, and their jobs run
/// again here).
pub fn refusal(batch: &str, instances: &[(String, Client)]) -> Option<String> {
    let stop = format!("`run-render stop --batch {batch}`");
    let ids = |want: &dyn Fn(&Client) -> bool| {
        instances
            .iter()
            .filter(|(_, c)| want(c))
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some((_, Client::Alive { pid })) = instances
        .iter()
        .find(|(_, c)| matches!(c, Client::Alive { .. }))
    {
        return Some(format!(
            "batch {batch}: an earlier run is still running in another terminal (pid {pid}, on {}): let it finish, or stop it with {stop}, then run again",
            ids(&|c| matches!(c, Client::Alive { .. }))
        ));
    }
    if instances.iter().any(|(_, c)| *c == Client::Detached) {
        return Some(format!(
            "batch {batch}: jobs of an earlier run started with --detach still run on {}: let them finish (run-render status --batch {batch}), or stop them with {stop}, then run again",
            ids(&|c| *c == Client::Detached)
        ));
    }
    if let Some((_, Client::Unknown { host })) = instances
        .iter()
        .find(|(_, c)| matches!(c, Client::Unknown { .. }))
    {
        return Some(format!(
            "batch {batch}: instance(s) {} of an earlier run are still running, and nothing on this machine says that run is over ({}): stop it where it runs with {stop}, or wait until they end, then run again",
            ids(&|c| matches!(c, Client::Unknown { .. })),
            match host {
                Some(h) => format!("its client ran on {h}"),
                None => "it may be another machine's, or a colleague's with your user name".into(),
            }
        ));
    }
    None
}

/// Fetch what an earlier run left. `ec2`: look for the EC2 engine's instances (AWS Batch's
/// are its own business, and a Batch-only user may not be allowed to describe instances).
pub async fn earlier_run(
    cloud: &Cloud,
    registry: &Registry,
    name: &str,
    jobs: &[BatchJob],
    ec2: bool,
) -> Result<Earlier, CloudError> {
    let owner = crate::plan::owner();
    let live: Vec<TaggedInstance> = if ec2 {
        cloud
            .tagged_instances(&Select {
                batch: Some(name),
                owner: Some(&owner),
                ..Default::default()
            })
            .await?
            .into_iter()
            .filter(|i| !i.state.is_gone())
            .collect()
    } else {
        Vec::new()
    };
    let entries = registry.of_batch(name);
    let here = crate::registry::host_name();
    let mut instances = Vec::new();
    for i in live {
        let mine: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.instance_id.as_deref() == Some(&i.id))
            .collect();
        let run = match i.pool.as_ref().and_then(|p| p.records.as_ref()) {
            Some(r) => cloud.get_json(r.bucket(), &r.run_key()).await?,
            None => None,
        };
        let client = client_of(&mine, run.as_ref(), here.as_deref(), |pid| {
            pid != std::process::id() && crate::registry::pid_alive(pid)
        });
        instances.push((i.id, client));
    }
    // Bounded concurrency: a 10,000-row batch is not 10,000 requests at once.
    let mut found = futures::stream::iter(
        jobs.iter()
            .enumerate()
            .map(|(j, job)| async move { latest(cloud, job).await.map(|r| (j, r)) }),
    )
    .buffer_unordered(16);
    let mut results = Vec::new();
    while let Some(r) = found.next().await {
        let (j, done) = r?;
        if let Some(done) = done {
            results.push((j, done));
        }
    }
    results.sort_by_key(|(j, _)| *j);
    Ok(Earlier { results, instances })
}

/// The newest attempt's result of `job`, and how its settings differ from the row's now
/// (each attempt has its own folder under the job's records; a plain `run` of the same id
/// writes at the job's folder itself, with no attempt record).
async fn latest(cloud: &Cloud, job: &BatchJob) -> Result<Option<Done>, CloudError> {
    let Some(base) = job.records_base() else {
        return Ok(None);
    };
    let records = cloud.newest_attempt(base).await?;
    let Some(result) = cloud.job_result(&records).await? else {
        return Ok(None);
    };
    let succeeded = result.outcome == rtb_model::Outcome::Succeeded;
    // What it ran matters only for a job --resume would skip.
    let changed = match succeeded {
        true => cloud
            .attempt_record(&records)
            .await?
            .map(|a| changed_settings(&a.settings, &job.what_it_runs()))
            .unwrap_or_default(),
        false => Vec::new(),
    };
    Ok(Some(Done { succeeded, changed }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtb_model::records::RunRecord;

    fn entry(pid: u32, host: &str, detached: bool) -> Entry {
        Entry {
            client_pid: Some(pid),
            client_host: Some(host.into()),
            detached,
            ..Entry::default()
        }
    }

    fn run_record(pid: u32, host: &str) -> RunRecord {
        RunRecord {
            schema: 1,
            batch: "b".into(),
            run: "r1".into(),
            owner: "ana".into(),
            client_host: Some(host.into()),
            client_pid: Some(pid),
            started_at: String::new(),
        }
    }

    #[test]
    fn an_earlier_runs_client_is_dead_only_when_this_machine_knows_it() {
        let alive = |pid: u32| pid == 10;
        let here = Some("lab-ws");
        let (live, dead, away) = (
            entry(10, "lab-ws", false),
            entry(11, "lab-ws", false),
            entry(10, "other-ws", false),
        );
        let detached = entry(12, "lab-ws", true);
        let table: Vec<(Vec<&Entry>, Option<RunRecord>, Client)> = vec![
            (vec![&live], None, Client::Alive { pid: 10 }),
            (vec![&dead, &live], None, Client::Alive { pid: 10 }),
            (vec![&dead], None, Client::Dead),
            (vec![&detached], None, Client::Detached),
            // The same pid on another machine says nothing.
            (vec![&away], None, Client::Unknown { host: None }),
            // No entry here: a colleague with the same user name, or another machine.
            (vec![], None, Client::Unknown { host: None }),
            (
                vec![],
                Some(run_record(10, "other-ws")),
                Client::Unknown {
                    host: Some("other-ws".into()),
                },
            ),
            // The run's record: its client ran here.
            (
                vec![],
                Some(run_record(10, "lab-ws")),
                Client::Alive { pid: 10 },
            ),
            (vec![], Some(run_record(11, "lab-ws")), Client::Dead),
        ];
        for (entries, run, want) in table {
            assert_eq!(
                client_of(&entries, run.as_ref(), here, alive),
                want,
                "{entries:?} {run:?}"
            );
        }
        assert_eq!(
            client_of(&[&live], None, None, alive),
            Client::Unknown { host: None },
            "no host name here: nothing is known"
        );
    }

    #[test]
    fn a_live_or_unknown_earlier_run_is_refused_with_how_to_stop_it() {
        let i = |id: &str, c: Client| (id.to_string(), c);
        assert_eq!(refusal("b", &[i("i-1", Client::Dead)]), None);
        let alive = refusal(
            "b",
            &[i("i-1", Client::Dead), i("i-2", Client::Alive { pid: 7 })],
        )
        .unwrap();
        assert!(alive.contains("pid 7") && alive.contains("i-2"), "{alive}");
        let unknown = refusal(
            "b",
            &[i(
                "i-3",
                Client::Unknown {
                    host: Some("ws-9".into()),
                },
            )],
        )
        .unwrap();
        assert!(
            unknown.contains("ws-9") && unknown.contains("i-3"),
            "{unknown}"
        );
        for line in [&alive, &unknown] {
            assert!(line.contains("run-render stop --batch b"), "{line}");
            assert_eq!(line.lines().count(), 1);
        }
        let detached = refusal("b", &[i("i-4", Client::Detached)]).unwrap();
        assert!(detached.contains("--detach"), "{detached}");
    }
}
