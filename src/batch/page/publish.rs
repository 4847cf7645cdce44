//! Writing a batch's page as it runs and at its end: thumbnails and log tails fetched (each
//! once), the HTML written beside the logs, and at the end a copy in S3. A page that cannot be
//! written never stops the batch: the problem is said once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rtb_model::S3Url;

use super::collect::Fetched;
use super::{html, store, Page};
use crate::cloud::Cloud;

/// Where the final page went.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// The local file, when it was written.
    pub path: Option<PathBuf>,
    /// Its copy in S3, when it was uploaded.
    pub s3_url: Option<S3Url>,
    /// What went wrong, one line each.
    pub problems: Vec<String>,
}

impl Published {
    /// The summary's last lines.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(p) = &self.path {
            out.push(format!("report: {}", p.display()));
        }
        if let Some(u) = &self.s3_url {
            out.push(format!("report in S3: {u}"));
        }
        out.extend(self.problems.iter().map(|p| format!("report: {p}")));
        out
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "path": self.path.as_ref().map(|p| p.display().to_string()),
            "s3_url": self.s3_url.as_ref().map(|u| u.to_string()),
        })
    }
}

pub struct Publisher<'a> {
    cloud: &'a Cloud,
    path: PathBuf,
    folder: Option<S3Url>,
    fetched: tokio::sync::Mutex<Fetched>,
    said: Mutex<HashSet<String>>,
    say: &'a (dyn Fn(&str) + Sync),
}

impl<'a> Publisher<'a> {
    /// A publisher writing to `path` and, at the end, to the S3 folder `folder`; `say` prints
    /// a problem (each one once).
    pub fn new(
        cloud: &'a Cloud,
        path: PathBuf,
        folder: Option<S3Url>,
        say: &'a (dyn Fn(&str) + Sync),
    ) -> Publisher<'a> {
        Publisher {
            cloud,
            path,
            folder,
            fetched: tokio::sync::Mutex::new(Fetched::default()),
            said: Mutex::new(HashSet::new()),
            say,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn once(&self, line: &str) {
        let mut said = self.said.lock().unwrap_or_else(|p| p.into_inner());
        if said.insert(line.to_string()) {
            (self.say)(&format!("run-render: report: {line}"));
        }
    }

    async fn filled(&self, page: &mut Page) {
        let notes = self.fetched.lock().await.fill(self.cloud, page).await;
        for n in notes {
            self.once(&n);
        }
    }

    /// Rewrite the live page (it reloads itself in the browser).
    pub async fn live(&self, mut page: Page) {
        page.live = true;
        page.s3_url = None;
        self.filled(&mut page).await;
        if let Err(e) = store::write_local(&self.path, &html::render(&page), &page) {
            self.once(&format!("cannot write {}: {e}", self.path.display()));
        }
    }

    /// Write the final page beside the logs and upload it next to the outputs.
    pub async fn finish(&self, mut page: Page) -> Published {
        let mut done = Published::default();
        page.live = false;
        self.filled(&mut page).await;
        let page_at = self
            .folder
            .as_ref()
            .map(|f| f.join(store::PAGE_NAME).to_string());
        page.s3_url = page_at;
        let text = html::render(&page);
        match store::write_local(&self.path, &text, &page) {
            Ok(()) => done.path = Some(self.path.clone()),
            Err(e) => done
                .problems
                .push(format!("cannot write {}: {e}", self.path.display())),
        }
        if let Some(folder) = &self.folder {
            match store::upload(self.cloud, folder, &text, &page).await {
                Ok(url) => done.s3_url = Some(url),
                Err(e) => done.problems.push(format!(
                    "could not upload it to {folder}: {e} (the local copy is complete)"
                )),
            }
        }
        done
    }
}
