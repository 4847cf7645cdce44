//! Where a batch's page goes: beside its logs (`run-render-logs/<batch>/report.html`), with
//! the model it was made from (`report.json`, which `report` reads back), and in S3 next to
//! the jobs' records: `<the outputs' common folder>/_rtb-batch/<batch>/report.html`.

use std::path::{Path, PathBuf};

use rtb_model::S3Url;

use super::Page;
use crate::cloud::{Cloud, CloudError};

/// The page's file name, beside the logs and in S3.
pub const PAGE_NAME: &str = "report.html";
/// The model's file name (what `report` rebuilds the page from).
pub const MODEL_NAME: &str = "report.json";
/// The batch folder's parent, below the outputs' common folder.
pub const BATCH_DIR: &str = "_rtb-batch";

/// The page's default place: `run-render-logs/<batch>/report.html`.
pub fn default_path(batch: &str) -> PathBuf {
    PathBuf::from("run-render-logs").join(batch).join(PAGE_NAME)
}

/// The model's place beside a page: `report.html` -> `report.json`.
pub fn model_path(page: &Path) -> PathBuf {
    page.with_extension("json")
}

/// The batch's folder in S3: in the bucket of the first output, below the folder all the
/// outputs in that bucket share (above the job's own output when there is one job), under
/// `_rtb-batch/<batch>/`. None without outputs.
pub fn s3_folder(batch: &str, outputs: &[S3Url]) -> Option<S3Url> {
    let first = outputs.first()?;
    let prefixes: Vec<String> = outputs
        .iter()
        .filter(|o| o.bucket() == first.bucket())
        .map(S3Url::dir_prefix)
        .collect();
    let mut common = prefixes[0].clone();
    for p in &prefixes[1..] {
        while !p.starts_with(&common) {
            common = parent(&common);
        }
    }
    if prefixes.iter().all(|p| *p == common) && !common.is_empty() {
        // One job's own output: the batch's folder goes beside it, not inside it.
        common = parent(&common);
    }
    S3Url::new(first.bucket(), &format!("{common}{BATCH_DIR}/{batch}/")).ok()
}

/// `a/b/` -> `a/`, `a/` -> ``, and a partial name is cut back to its folder: `a/bc` -> `a/`.
fn parent(prefix: &str) -> String {
    let inner = prefix.strip_suffix('/').unwrap_or(prefix);
    match inner.rfind('/') {
        Some(i) => inner[..=i].to_string(),
        None => String::new(),
    }
}

/// Write the page and its model, each atomically (a browser reloading the live page never
/// reads half of one).
pub fn write_local(path: &Path, html: &str, page: &Page) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    atomic_write(path, html.as_bytes())?;
    let model = serde_json::to_vec_pretty(page).unwrap_or_default();
    atomic_write(&model_path(path), &model)
}

fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Put the page and its model into the batch's S3 folder; the page's URL.
pub async fn upload(
    cloud: &Cloud,
    folder: &S3Url,
    html: &str,
    page: &Page,
) -> Result<S3Url, CloudError> {
    let model = serde_json::to_vec_pretty(page).unwrap_or_default();
    let model_at = folder.join(MODEL_NAME);
    cloud
        .put_bytes(model_at.bucket(), model_at.key(), model, "application/json")
        .await?;
    let page_at = folder.join(PAGE_NAME);
    cloud
        .put_bytes(
            page_at.bucket(),
            page_at.key(),
            html.as_bytes().to_vec(),
            "text/html; charset=utf-8",
        )
        .await?;
    Ok(page_at)
}

/// The model a batch left in S3, if any.
pub async fn download_model(cloud: &Cloud, folder: &S3Url) -> Result<Option<Page>, CloudError> {
    let at = folder.join(MODEL_NAME);
    Ok(cloud
        .get_bytes(at.bucket(), at.key())
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// The model a batch left beside its page, if any.
pub fn read_model(page: &Path) -> Option<Page> {
    let bytes = std::fs::read(model_path(page)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<S3Url> {
        list.iter().map(|u| u.parse().unwrap()).collect()
    }

    #[test]
    fn the_batch_folder_is_above_every_output() {
        let table: &[(&[&str], Option<&str>)] = &[
            (&[], None),
            (
                &["s3://lab/run-1/a", "s3://lab/run-1/b/"],
                Some("s3://lab/run-1/_rtb-batch/demo/"),
            ),
            (
                &["s3://lab/run-1/scene-1", "s3://lab/run-1/scene-12"],
                Some("s3://lab/run-1/_rtb-batch/demo/"),
            ),
            (
                &["s3://lab/x/1", "s3://lab/y/2"],
                Some("s3://lab/_rtb-batch/demo/"),
            ),
            // One job: beside its output, not inside.
            (
                &["s3://lab/run-1/a"],
                Some("s3://lab/run-1/_rtb-batch/demo/"),
            ),
            (&["s3://lab"], Some("s3://lab/_rtb-batch/demo/")),
            // Other buckets do not pull the folder up.
            (
                &["s3://lab/r/a", "s3://other/z", "s3://lab/r/b"],
                Some("s3://lab/r/_rtb-batch/demo/"),
            ),
        ];
        for (outputs, want) in table {
            let got = s3_folder("demo", &urls(outputs)).map(|u| u.to_string());
            assert_eq!(got.as_deref(), *want, "{outputs:?}");
        }
    }

    #[test]
    fn the_page_and_its_model_are_written_side_by_side() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("logs/b/report.html");
        let page = Page {
            batch: "b".into(),
            ..Page::default()
        };
        write_local(&path, "<html>", &page).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "<html>");
        assert_eq!(read_model(&path).unwrap().batch, "b");
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left.len(), 2, "no temporary files left: {left:?}");
        assert_eq!(
            default_path("vwcc2"),
            Path::new("run-render-logs/vwcc2/report.html")
        );
        assert_eq!(
            model_path(&default_path("v")),
            Path::new("run-render-logs/v/report.json")
        );
        assert_eq!(model_path(Path::new("x.html")), Path::new("x.json"));
    }
}
