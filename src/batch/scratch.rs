//! Where each job's scratch folders lie, checked before a pool runs anything. A scratch
//! folder inside the container is new with each job's container; one on a host volume (the
//! lab's `OUTPUT_SCRATCH=/home/ubuntu/render-toolbox-working`, inside the mounted home,
//! because renderers run as peer containers and need host paths) outlives the job. So:
//! - on an instance an earlier job used, the runner empties such a folder first
//!   (`RTB_EMPTY_SCRATCH`), which is only safe when the folder is the job's scratch and
//!   nothing else: not a whole volume, not holding the startup script or another volume;
//! - two jobs at once on one instance (per-instance > 1) must not share such a folder, or
//!   one inside the other: they would upload each other's files.
//!
//! Pure: the plans' settings and volumes in, the first problem out (one line naming the
//! setting and the rows).

use std::path::{Component, Path, PathBuf};

use rtb_model::contract;

use super::file::{err, BatchFile, FileError};
use super::jobs::BatchJob;
use crate::plan::{Plan, Work};

/// A scratch folder of a job that lies on a writable host volume.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OnHost {
    setting: &'static str,
    /// The folder, as the container sees it.
    path: PathBuf,
    /// The same folder on the instance.
    host: PathBuf,
    /// The volume it lies on (instance path, container path).
    volume: (PathBuf, PathBuf),
}

/// Whether any of the job's scratch folders lies on a host volume (then the runner empties
/// them on a reused instance; a folder inside the container is new anyway).
pub fn on_host_volume(plan: &Plan) -> bool {
    !on_host(plan).is_empty()
}

/// Check the batch's jobs for a pool running `per_instance` of them at once per instance.
pub fn check(file: &BatchFile, jobs: &[BatchJob], per_instance: usize) -> Result<(), FileError> {
    let row = |j: &BatchJob| match &file.csv {
        Some((csv, _)) => format!(
            "{}: row {} (line {})",
            csv.display(),
            j.row.number,
            j.row.line
        ),
        None => file.path.display().to_string(),
    };
    let mut seen: Vec<(&BatchJob, OnHost)> = Vec::new();
    for job in jobs {
        let places = on_host(&job.plan);
        if let Some(problem) = emptying_problem(&job.plan, &places) {
            return Err(err(row(job), problem));
        }
        for place in places {
            if per_instance > 1 {
                let shared = seen.iter().find(|(other, o)| {
                    other.job_id != job.job_id
                        && (o.host.starts_with(&place.host) || place.host.starts_with(&o.host))
                });
                if let Some((other, o)) = shared {
                    return Err(err(
                        row(job),
                        format!(
                            "{}={} is the host folder {} that row {}'s {} uses too (or one inside the other), and per-instance = {per_instance} runs jobs side by side on one instance, mixing their files: give each row a folder of its own (a ${{column}} in the path) or set per-instance = 1",
                            place.setting,
                            place.path.display(),
                            place.host.display(),
                            other.row.number,
                            o.setting,
                        ),
                    ));
                }
            }
            seen.push((job, place));
        }
    }
    Ok(())
}

/// Why emptying the job's scratch folders on a reused instance would remove more than the
/// job's scratch, if it would.
fn emptying_problem(plan: &Plan, places: &[OnHost]) -> Option<String> {
    let Work::Container(c) = &plan.work else {
        return None;
    };
    let why = "a pool empties a job's scratch folders on a host volume before it runs on an instance an earlier job used";
    for p in places {
        if p.path == p.volume.1 {
            return Some(format!(
                "{}={} is the whole host folder {} (volume {}:{}); {why}, so give {} a folder of its own inside it (e.g. {}/scratch)",
                p.setting,
                p.path.display(),
                p.host.display(),
                p.volume.0.display(),
                p.volume.1.display(),
                p.setting,
                p.path.display()
            ));
        }
        if let Some(startup) = setting(plan, contract::STARTUP.name).map(normal) {
            if startup.starts_with(&p.path) {
                return Some(format!(
                    "STARTUP {} lies inside {}={}; {why}, which would remove it: keep the startup script outside the scratch folders",
                    startup.display(),
                    p.setting,
                    p.path.display()
                ));
            }
        }
        for (host, ctr, _) in &c.volumes {
            let ctr = normal(ctr);
            if ctr != p.path && ctr.starts_with(&p.path) {
                return Some(format!(
                    "the volume {host}:{} is mounted inside {}={}; {why}, which would empty that volume too: mount it elsewhere",
                    ctr.display(),
                    p.setting,
                    p.path.display()
                ));
            }
        }
    }
    None
}

/// The job's scratch folders that lie on writable host volumes.
fn on_host(plan: &Plan) -> Vec<OnHost> {
    let Work::Container(c) = &plan.work else {
        return Vec::new();
    };
    let mut folders = vec![
        (contract::INPUT_SCRATCH, true),
        (contract::OUTPUT_SCRATCH, true),
        (
            contract::MOUNT_SCRATCH,
            setting(plan, contract::MOUNT_BUCKET.name).is_some(),
        ),
    ];
    folders.retain(|(_, used)| *used);
    let mut out = Vec::new();
    for (var, _) in folders {
        let path = normal(setting(plan, var.name).or(var.default).unwrap_or_default());
        if !path.is_absolute() {
            continue;
        }
        // The innermost volume holding it decides where it really is.
        let volume = c
            .volumes
            .iter()
            .map(|(h, ctr, ro)| (normal(h), normal(ctr), *ro))
            .filter(|(_, ctr, _)| path.starts_with(ctr))
            .max_by_key(|(_, ctr, _)| ctr.components().count());
        if let Some((host, ctr, false)) = volume {
            let rest = path.strip_prefix(&ctr).unwrap_or(Path::new(""));
            out.push(OnHost {
                setting: var.name,
                host: normal(host.join(rest)),
                path: path.clone(),
                volume: (host, ctr),
            });
        }
    }
    out
}

/// A runner setting of the job, as the runner reads it (empty means its default).
fn setting<'a>(plan: &'a Plan, name: &str) -> Option<&'a str> {
    let Work::Container(c) = &plan.work else {
        return None;
    };
    c.env
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// A path with `.`, `..` and repeated or trailing slashes resolved as text.
fn normal(p: impl AsRef<Path>) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.as_ref().components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of two rows whose `[job]` adds `extra`; its CSV has the columns `n` (1, 2)
    /// and `d` (a, b).
    fn jobs_of(extra: &str) -> (tempfile::TempDir, BatchFile, Vec<BatchJob>) {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("jobs.csv"), "n,d\n1,a\n2,b\n").unwrap();
        let f = d.path().join("b.toml");
        std::fs::write(
            &f,
            format!("[batch]\ncsv = \"jobs.csv\"\n[job]\nami = \"ami-0123456789abcdef0\"\ncommand = \"render(${{n}})\"\noutput = \"s3://lab/${{n}}\"\n{extra}"),
        )
        .unwrap();
        let file = BatchFile::load(&f).unwrap();
        let jobs = super::super::jobs::jobs(&file, &[], super::super::jobs::Engine::Ec2).unwrap();
        (d, file, jobs)
    }

    #[test]
    fn the_table() {
        const LAB: &str =
            "volume = [\"/home/ubuntu:/home/ubuntu\"]\nstartup = \"/home/ubuntu/MATLAB/startup\"\n";
        // (the [job] lines, per-instance, the refusal's words or "" for accepted)
        let table: &[(String, usize, &str)] = &[
            // Inside the container: new with each container, never shared.
            (String::new(), 2, ""),
            // The lab's layout: fine one at a time (the runner empties it on reuse)...
            (format!("{LAB}env = [\"OUTPUT_SCRATCH=/home/ubuntu/render-toolbox-working\"]\n"), 1, ""),
            // ... and shared by two jobs at once: refused, naming the setting and the row.
            (
                format!("{LAB}env = [\"OUTPUT_SCRATCH=/home/ubuntu/render-toolbox-working\"]\n"),
                2,
                "row 2 (line 3): OUTPUT_SCRATCH=/home/ubuntu/render-toolbox-working is the host folder /home/ubuntu/render-toolbox-working that row 1's OUTPUT_SCRATCH uses too",
            ),
            // A folder per row: two at once are apart.
            (format!("{LAB}env = [\"OUTPUT_SCRATCH=/home/ubuntu/w/${{n}}\"]\n"), 2, ""),
            // One inside the other is sharing too (row 2's output inside row 1's input).
            (
                format!("{LAB}env = [\"INPUT_SCRATCH=/home/ubuntu/in${{n}}\", \"OUTPUT_SCRATCH=/home/ubuntu/in1/out${{n}}\"]\n"),
                2,
                "row 2 (line 3): OUTPUT_SCRATCH=/home/ubuntu/in1/out2 is the host folder /home/ubuntu/in1/out2 that row 1's INPUT_SCRATCH uses too",
            ),
            // The same host folder under another container path is the same folder.
            (
                "volume = [\"/data:/a\", \"/data:/b\"]\nenv = [\"OUTPUT_SCRATCH=/${d}/w\"]\n".to_string(),
                2,
                "OUTPUT_SCRATCH=/b/w is the host folder /data/w that row 1's OUTPUT_SCRATCH uses too",
            ),
            // The whole home as scratch: emptying it would take the startup script and all.
            (
                format!("{LAB}env = [\"OUTPUT_SCRATCH=/home/ubuntu/\"]\n"),
                1,
                "row 1 (line 2): OUTPUT_SCRATCH=/home/ubuntu is the whole host folder /home/ubuntu (volume /home/ubuntu:/home/ubuntu)",
            ),
            // A default scratch folder that is a volume's mount point is a whole volume too.
            (
                "volume = [\"/data/in:/input-scratch\"]\n".to_string(),
                1,
                "INPUT_SCRATCH=/input-scratch is the whole host folder /data/in",
            ),
            // Read-only volumes are not written, so not emptied.
            ("volume = [\"/data/in:/input-scratch:ro\"]\n".to_string(), 2, ""),
            (
                format!("{LAB}env = [\"OUTPUT_SCRATCH=/home/ubuntu/MATLAB\"]\n"),
                1,
                "STARTUP /home/ubuntu/MATLAB/startup lies inside OUTPUT_SCRATCH=/home/ubuntu/MATLAB",
            ),
            (
                "volume = [\"/home/ubuntu:/home/ubuntu\", \"/data:/home/ubuntu/w/data\"]\nenv = [\"OUTPUT_SCRATCH=/home/ubuntu/w\"]\n".to_string(),
                1,
                "the volume /data:/home/ubuntu/w/data is mounted inside OUTPUT_SCRATCH=/home/ubuntu/w",
            ),
            // MOUNT_SCRATCH counts only when a bucket is mounted there.
            (format!("{LAB}env = [\"MOUNT_SCRATCH=/home/ubuntu/m\"]\n"), 2, ""),
        ];
        for (extra, per, want) in table {
            let (_d, file, jobs) = jobs_of(extra);
            match (check(&file, &jobs, *per), want.is_empty()) {
                (Ok(()), true) => {}
                (Ok(()), false) => panic!("accepted, wanted {want:?}:\n{extra}"),
                (Err(e), true) => panic!("refused: {e}\n{extra}"),
                (Err(e), false) => {
                    let e = e.to_string();
                    assert!(e.contains(want), "{e}\nwanted: {want}\n{extra}");
                    assert_eq!(e.lines().count(), 1, "{e}");
                }
            }
        }
    }

    #[test]
    fn where_a_scratch_folder_is() {
        let (_d, _f, jobs) = jobs_of(
            "volume = [\"/home/ubuntu:/home/ubuntu\", \"/srv/data:/home/ubuntu/data\"]\nenv = [\"OUTPUT_SCRATCH=/home/ubuntu/data/./out/\"]\n",
        );
        let places = on_host(&jobs[0].plan);
        assert_eq!(places.len(), 1, "{places:?}");
        assert_eq!(places[0].setting, "OUTPUT_SCRATCH");
        assert_eq!(
            places[0].host,
            PathBuf::from("/srv/data/out"),
            "the innermost volume"
        );
        assert!(on_host_volume(&jobs[0].plan));
        let (_d, _f, jobs) = jobs_of("");
        assert!(!on_host_volume(&jobs[0].plan));
    }
}
