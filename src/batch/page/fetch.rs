//! What a page embeds from the jobs' records in S3: each final card's thumbnail (when the runner
//! made one) and, for a failed job, its log's last lines. A live page fetches each attempt's
//! once.

use std::collections::HashMap;

use futures::StreamExt;
use rtb_model::{JobRecords, S3Url};

use super::{Page, State, LOG_TAIL_LINES, THUMBNAIL_EMBED_MAX};
use crate::cloud::{Cloud, CloudError};

/// S3 reads at once (a 1,000-job batch is not 1,000 requests at once).
const CONCURRENCY: usize = 16;

/// Thumbnails and log tails already fetched, by records folder: a live page fetches each
/// attempt's once.
#[derive(Debug, Default)]
pub struct Fetched {
    thumbnails: HashMap<String, Option<Vec<u8>>>,
    tails: HashMap<String, Vec<String>>,
}

impl Fetched {
    /// Fill in each final card's thumbnail (when the runner made one) and, for a failed
    /// job, its log's last lines. What cannot be read is left out, with one note per cause
    /// for the caller; the page is made anyway.
    pub async fn fill(&mut self, cloud: &Cloud, page: &mut Page) -> Vec<String> {
        let mut notes = Vec::new();
        let wanted: Vec<(usize, JobRecords, bool, bool)> = page
            .jobs
            .iter()
            .enumerate()
            .filter(|(_, c)| c.state.is_final())
            .filter_map(|(i, c)| {
                let root: S3Url = c.records.as_deref()?.parse().ok()?;
                let key = c.records.clone()?;
                let thumb = c.picture.as_ref().is_some_and(|p| p.thumbnail.is_some())
                    && !self.thumbnails.contains_key(&key);
                let tail = c.state == State::Failed && !self.tails.contains_key(&key);
                Some((i, JobRecords::at(root), thumb, tail))
            })
            .collect();
        let mut got = futures::stream::iter(wanted.into_iter().map(
            |(i, records, thumb, tail)| async move {
                let t = if thumb {
                    Some(
                        cloud
                            .get_bytes(records.bucket(), &records.thumbnail_key())
                            .await,
                    )
                } else {
                    None
                };
                let l = if tail {
                    Some(log_tail(cloud, &records).await)
                } else {
                    None
                };
                (i, records.root().to_string(), t, l)
            },
        ))
        .buffer_unordered(CONCURRENCY);
        while let Some((_, key, t, l)) = got.next().await {
            match t {
                Some(Ok(bytes)) => {
                    let bytes = bytes.filter(|b| match embeddable(b) {
                        Ok(()) => true,
                        Err(why) => {
                            notes.push(format!("thumbnail of {key}: {why}: not embedded"));
                            false
                        }
                    });
                    self.thumbnails.insert(key.clone(), bytes);
                }
                Some(Err(e)) => notes.push(format!("thumbnail of {key}: {e}")),
                None => {}
            }
            match l {
                Some(Ok(lines)) => {
                    self.tails.insert(key, lines);
                }
                Some(Err(e)) => notes.push(format!("log of {key}: {e}")),
                None => {}
            }
        }
        drop(got);
        for c in &mut page.jobs {
            let Some(key) = &c.records else { continue };
            if let Some(t) = self.thumbnails.get(key) {
                c.thumbnail = t.clone();
            }
            if let Some(l) = self.tails.get(key) {
                c.log_tail = l.clone();
            }
        }
        notes
    }
}

/// A thumbnail goes into the page only if it is a PNG (what the runner writes) of a size a
/// page of many can carry.
fn embeddable(bytes: &[u8]) -> Result<(), String> {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
    if !bytes.starts_with(PNG) {
        return Err("not a PNG".into());
    }
    if bytes.len() > THUMBNAIL_EMBED_MAX {
        return Err(format!("{} bytes, over {THUMBNAIL_EMBED_MAX}", bytes.len()));
    }
    Ok(())
}

/// The last [`LOG_TAIL_LINES`] lines of a job's log: its last chunks, newest first until
/// there are enough.
async fn log_tail(cloud: &Cloud, records: &JobRecords) -> Result<Vec<String>, CloudError> {
    let keys = cloud
        .keys_after(records.bucket(), &records.log_prefix(), None)
        .await?;
    let mut chunks: Vec<(u64, String)> = keys
        .into_iter()
        .filter_map(|k| records.chunk_seq(&k).map(|n| (n, k)))
        .collect();
    chunks.sort();
    // One listing page (1,000 chunks): a longer log goes on from where it ended.
    if chunks.len() >= 1000 {
        while let Some(last) = chunks.last().map(|(_, k)| k.clone()) {
            let more = cloud
                .keys_after(records.bucket(), &records.log_prefix(), Some(&last))
                .await?;
            let more: Vec<(u64, String)> = more
                .into_iter()
                .filter_map(|k| records.chunk_seq(&k).map(|n| (n, k)))
                .collect();
            if more.is_empty() {
                break;
            }
            chunks.extend(more);
        }
        chunks.sort();
    }
    let mut lines: Vec<String> = Vec::new();
    for (_, key) in chunks.iter().rev() {
        let Some(bytes) = cloud.get_bytes(records.bucket(), key).await? else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let mut these: Vec<String> = text.lines().map(str::to_string).collect();
        these.append(&mut lines);
        lines = these;
        if lines.len() >= LOG_TAIL_LINES {
            break;
        }
    }
    let skip = lines.len().saturating_sub(LOG_TAIL_LINES);
    Ok(lines.split_off(skip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_pngs_are_embedded() {
        let png = |n: usize| {
            let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
            b.resize(n, 0);
            b
        };
        assert!(embeddable(&png(100)).is_ok());
        assert!(embeddable(&png(THUMBNAIL_EMBED_MAX)).is_ok());
        assert!(embeddable(&png(THUMBNAIL_EMBED_MAX + 1))
            .unwrap_err()
            .contains("over"));
        assert_eq!(embeddable(b"<html>").unwrap_err(), "not a PNG");
    }
}
