//! What one checkpoint sends, decided from what the last one saved and what the folder holds
//! now: pure, table-tested without S3.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use rtb_model::S3Url;

use crate::transfer::{LocalFile, Stamp};

/// A file as the newest checkpoint holds it: the version saved, and where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub stamp: Stamp,
    pub url: S3Url,
    pub etag: String,
}

/// What to do with the folder's files now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// New or changed since they were saved, and settled: upload them.
    pub send: Vec<LocalFile>,
    /// Changed too recently to be sure they are complete: left for a later checkpoint (their
    /// earlier saved version, if any, stands meanwhile).
    pub unsettled: usize,
    /// Saved before but gone from the folder now: out of the manifest.
    pub gone: Vec<String>,
}

/// Decide one checkpoint. A file is sent when its size or modification time differ from the
/// saved version's (or it has none), and only once it has not changed for `settle`: a file
/// still being written must not be recorded as complete. (The upload also refuses a file that
/// changes while it is sent; `settle` catches the writer that pauses between writes.)
pub fn decide(
    saved: &BTreeMap<String, Saved>,
    now_files: Vec<LocalFile>,
    now: SystemTime,
    settle: Duration,
) -> Decision {
    let mut d = Decision::default();
    let mut present = std::collections::BTreeSet::new();
    for f in now_files {
        present.insert(f.rel.clone());
        if saved.get(&f.rel).is_some_and(|s| s.stamp == f.stamp) {
            continue;
        }
        // A time in the future (another clock, a touch) is not settled either.
        let settled = f
            .stamp
            .modified
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age >= settle);
        if settled {
            d.send.push(f);
        } else {
            d.unsettled += 1;
        }
    }
    d.gone = saved
        .keys()
        .filter(|rel| !present.contains(*rel))
        .cloned()
        .collect();
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const SETTLE: Duration = Duration::from_secs(2);

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    fn file(rel: &str, size: u64, modified: Option<SystemTime>) -> LocalFile {
        LocalFile {
            path: PathBuf::from("/out").join(rel),
            rel: rel.to_string(),
            stamp: Stamp { size, modified },
        }
    }

    fn saved(entries: &[(&str, u64, u64)]) -> BTreeMap<String, Saved> {
        entries
            .iter()
            .map(|(rel, size, secs)| {
                (
                    rel.to_string(),
                    Saved {
                        stamp: Stamp {
                            size: *size,
                            modified: Some(at(*secs)),
                        },
                        url: format!("s3://bkt/cp/{rel}").parse().unwrap(),
                        etag: "\"e\"".into(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn the_table() {
        let now = at(100);
        let before = saved(&[("a.png", 10, 50), ("b.png", 10, 50), ("gone.png", 1, 10)]);
        // (case, files now, sent, unsettled)
        let table: Vec<(&str, Vec<LocalFile>, Vec<&str>, usize)> = vec![
            (
                "unchanged",
                vec![file("a.png", 10, Some(at(50)))],
                vec![],
                0,
            ),
            (
                "new and settled",
                vec![file("c.png", 5, Some(at(90)))],
                vec!["c.png"],
                0,
            ),
            (
                "grew",
                vec![file("a.png", 11, Some(at(60)))],
                vec!["a.png"],
                0,
            ),
            (
                "rewritten at the same size",
                vec![file("b.png", 10, Some(at(70)))],
                vec!["b.png"],
                0,
            ),
            (
                "being written (changed 1 s ago)",
                vec![file("c.png", 5, Some(at(99)))],
                vec![],
                1,
            ),
            (
                "exactly settled",
                vec![file("c.png", 5, Some(at(98)))],
                vec!["c.png"],
                0,
            ),
            (
                "time in the future",
                vec![file("c.png", 5, Some(at(500)))],
                vec![],
                1,
            ),
            ("no time at all", vec![file("c.png", 5, None)], vec![], 1),
            (
                "changed saved file still being written",
                vec![file("a.png", 12, Some(at(100)))],
                vec![],
                1,
            ),
        ];
        for (case, files, sent, unsettled) in table {
            let d = decide(&before, files, now, SETTLE);
            let got: Vec<&str> = d.send.iter().map(|f| f.rel.as_str()).collect();
            assert_eq!(got, sent, "{case}");
            assert_eq!(d.unsettled, unsettled, "{case}");
        }
    }

    #[test]
    fn files_no_longer_there_leave_the_manifest() {
        let before = saved(&[("a.png", 10, 50), ("gone.png", 1, 10)]);
        let d = decide(
            &before,
            vec![file("a.png", 10, Some(at(50)))],
            at(100),
            SETTLE,
        );
        assert_eq!(d.gone, vec!["gone.png".to_string()]);
        assert!(d.send.is_empty());
        let d = decide(&BTreeMap::new(), vec![], at(100), SETTLE);
        assert_eq!(d, Decision::default());
    }
}
