//! Writing downloaded bytes to disk: under a temporary name next to the destination, at any
//! offset (ranged parts share one pre-sized file), renamed into place only once complete and
//! verified. A download that fails leaves no file behind under either name.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bytes gathered before one write to disk: large enough that the hop to a blocking thread is
/// rare (a few per MiB would cost more than the write), small enough that a hundred concurrent
/// downloads hold little memory.
const WRITE_CHUNK: usize = 1 << 20;

/// `name.rtb-partial` next to `dest`: visible, so an interrupted copy is easy to spot.
pub(crate) fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().map(OsString::from).unwrap_or_default();
    name.push(".rtb-partial");
    dest.with_file_name(name)
}

/// Removes the temporary file when dropped, unless the download was committed.
pub(crate) struct PartialGuard {
    path: PathBuf,
    armed: bool,
}

impl PartialGuard {
    pub(crate) fn new(path: PathBuf) -> Self {
        PartialGuard { path, armed: true }
    }

    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for PartialGuard {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: the error that got us here is the one worth reporting.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Create `path` with `size` bytes, for parts to fill in at their offsets.
pub(crate) async fn presized(path: &Path, size: u64) -> io::Result<Arc<File>> {
    let path = path.to_path_buf();
    blocking(move || {
        let file = create(&path)?;
        file.set_len(size)?;
        Ok(Arc::new(file))
    })
    .await
}

/// Sequential writes from `offset` on, buffered; the file is created on the first write when
/// none is given (one blocking hop for a small object: create, write, rename).
pub(crate) struct Sink {
    path: PathBuf,
    file: Option<Arc<File>>,
    offset: u64,
    buf: Vec<u8>,
}

impl Sink {
    pub(crate) fn new(path: PathBuf, file: Option<Arc<File>>, offset: u64) -> Self {
        Sink {
            path,
            file,
            offset,
            buf: Vec::new(),
        }
    }

    pub(crate) async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= WRITE_CHUNK {
            self.flush(None).await?;
        }
        Ok(())
    }

    /// Write what is left; then, if `rename_to` is given, move the file there.
    pub(crate) async fn finish(mut self, rename_to: Option<&Path>) -> io::Result<()> {
        self.flush(rename_to.map(Path::to_path_buf)).await
    }

    async fn flush(&mut self, rename_to: Option<PathBuf>) -> io::Result<()> {
        let buf = std::mem::take(&mut self.buf);
        let file = self.file.clone();
        let path = self.path.clone();
        let offset = self.offset;
        let (file, mut buf) = blocking(move || {
            let file = match file {
                Some(f) => f,
                None => Arc::new(create(&path)?),
            };
            file.write_all_at(&buf, offset)?;
            if let Some(dest) = rename_to {
                std::fs::rename(&path, dest)?;
            }
            Ok((file, buf))
        })
        .await?;
        self.offset += buf.len() as u64;
        buf.clear();
        self.buf = buf;
        self.file = Some(file);
        Ok(())
    }
}

/// Move the finished temporary file into place.
pub(crate) async fn commit(from: &Path, to: &Path) -> io::Result<()> {
    let (from, to) = (from.to_path_buf(), to.to_path_buf());
    blocking(move || std::fs::rename(from, to)).await
}

fn create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|join| Err(io::Error::other(join)))
}
