//! Emptying a scratch folder before the job, when asked (`RTB_EMPTY_SCRATCH=1`). A batch's
//! instance runs one job after another, and a scratch folder on a host volume (the lab's
//! `OUTPUT_SCRATCH=/home/ubuntu/render-toolbox-working`) keeps what the last job left: the
//! next job would find those files and upload them as its own. Only the folder's contents
//! go; the folder stays (it may be a mount point), symbolic links are removed, never
//! followed, and whatever is mounted inside it (another file system) is left alone.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What emptying one folder did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emptied {
    pub setting: &'static str,
    pub dir: PathBuf,
    /// Entries removed at the top of the folder (each with all it held).
    pub removed: usize,
    /// Entries left because another file system is mounted there.
    pub kept: Vec<PathBuf>,
}

/// Empty `dir` (which exists). An entry that cannot be removed is an error: the job must not
/// start among an earlier job's files.
pub fn empty(setting: &'static str, dir: &Path) -> Result<Emptied, String> {
    if dir.parent().is_none() {
        return Err(format!(
            "will not empty {} (the root of the file system)",
            dir.display()
        ));
    }
    let what = |e: std::io::Error, p: &Path| {
        format!("cannot empty {}: {}: {e}", dir.display(), p.display())
    };
    let device = std::fs::metadata(dir).map_err(|e| what(e, dir))?.dev();
    let mut done = Emptied {
        setting,
        dir: dir.to_path_buf(),
        removed: 0,
        kept: Vec::new(),
    };
    for entry in std::fs::read_dir(dir).map_err(|e| what(e, dir))? {
        let path = entry.map_err(|e| what(e, dir))?.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|e| what(e, &path))?;
        if meta.is_dir() && meta.dev() != device {
            done.kept.push(path);
            continue;
        }
        let removed = if meta.is_dir() {
            remove_tree(&path, device, &mut done.kept)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| what(e, &path))?;
        done.removed += 1;
    }
    Ok(done)
}

/// Remove a folder and what it holds, but not what another file system mounted below it
/// holds (that folder, and so its parents, then stay).
fn remove_tree(dir: &Path, device: u64, kept: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut whole = true;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() && meta.dev() != device {
            kept.push(path);
            whole = false;
        } else if meta.is_dir() {
            let before = kept.len();
            remove_tree(&path, device, kept)?;
            whole &= kept.len() == before;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    if whole {
        std::fs::remove_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_contents_go_and_links_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let scratch = d.path().join("work");
        let outside = d.path().join("startup.m");
        std::fs::write(&outside, "keep me").unwrap();
        std::fs::create_dir_all(scratch.join("a/b")).unwrap();
        std::fs::write(scratch.join("a/b/frame.exr"), "old").unwrap();
        std::fs::write(scratch.join("matlab.log"), "old log").unwrap();
        std::os::unix::fs::symlink(&outside, scratch.join("link-to-startup")).unwrap();
        std::os::unix::fs::symlink(d.path(), scratch.join("link-to-parent")).unwrap();

        let done = empty("OUTPUT_SCRATCH", &scratch).unwrap();
        assert_eq!(done.removed, 4);
        assert!(done.kept.is_empty());
        assert!(scratch.is_dir(), "the folder itself stays");
        assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep me");

        // Empty already: nothing to do.
        assert_eq!(empty("OUTPUT_SCRATCH", &scratch).unwrap().removed, 0);
    }

    #[test]
    fn the_root_is_never_emptied() {
        let e = empty("OUTPUT_SCRATCH", Path::new("/")).unwrap_err();
        assert!(e.contains("will not empty /"), "{e}");
    }
}
