//! The batch file: a TOML document with a `[batch]` table (how the batch runs) and a `[job]`
//! table (every `run` flag by its long name, with `${column}` taken from each CSV row).
//! Everything here is checked before any AWS call, and every error names the file, and the
//! key, row or column it is about.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// An error in a batch file or its CSV: where, and what.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {problem}")]
pub struct FileError {
    pub at: String,
    pub problem: String,
}

pub fn err(at: impl Into<String>, problem: impl Into<String>) -> FileError {
    FileError {
        at: at.into(),
        problem: problem.into(),
    }
}

/// `[batch]`: how the batch runs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// The batch's name [default: the file's name without .toml].
    pub name: Option<String>,
    /// One job per data row; relative to the batch file.
    pub csv: Option<String>,
    pub parallel: Option<u32>,
    pub per_instance: Option<u32>,
    pub retries: Option<u32>,
    pub retry_on_job_error: Option<bool>,
    pub spot: Option<bool>,
    pub spot_fallback: Option<bool>,
    /// Spot reclaims retried on spot, beyond `retries`, before a job goes on demand.
    pub spot_retries: Option<u32>,
    pub engine: Option<String>,
    pub queue: Option<String>,
    /// AWS Batch: what each job asks for [default: what the instance type has].
    pub vcpus: Option<u32>,
    pub memory_mib: Option<u32>,
    /// AWS Batch: "array" (one array job, rows in an S3 manifest; the default) or "per-row".
    pub submit: Option<String>,
    /// The instances' price in USD per hour (wins over AWS's prices).
    pub price: Option<f64>,
    /// The budget in USD.
    pub max_cost: Option<f64>,
    /// At the budget: "finish" (running jobs complete) or "stop" (they are stopped).
    pub on_budget: Option<String>,
}

/// One data row: its number (1 = the first after the header), its line in the CSV, and its
/// values by column.
#[derive(Debug, Clone)]
pub struct Row {
    pub number: usize,
    pub line: u64,
    pub values: BTreeMap<String, String>,
}

/// A parsed batch file.
#[derive(Debug, Clone)]
pub struct BatchFile {
    pub path: PathBuf,
    pub name: String,
    pub settings: Settings,
    /// `[job]`, as written.
    pub template: toml::Table,
    /// The CSV's path as given and its header, when there is one.
    pub csv: Option<(PathBuf, Vec<String>)>,
    /// The rows; a file without csv is a batch of one row with no columns.
    pub rows: Vec<Row>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    #[serde(default)]
    batch: Settings,
    job: Option<toml::Table>,
}

impl BatchFile {
    pub fn load(path: &Path) -> Result<BatchFile, FileError> {
        let at = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| err(&at, format!("cannot read it: {e}")))?;
        BatchFile::parse(path, &text)
    }

    /// Parse `text` as the batch file at `path` (the CSV is read relative to it).
    pub fn parse(path: &Path, text: &str) -> Result<BatchFile, FileError> {
        let at = path.display().to_string();
        let doc: Doc = toml::from_str(text).map_err(|e| {
            // toml's message spans lines (it quotes the source); the first and the caret line
            // carry what and where.
            let msg = e.message().trim().to_string();
            let place = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}: ")
                })
                .unwrap_or_default();
            err(&at, format!("{place}{msg}"))
        })?;
        let template = doc
            .job
            .ok_or_else(|| err(&at, "has no [job] table (the flags every job is run with)"))?;
        let name = match &doc.batch.name {
            Some(n) => n.clone(),
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "batch".into()),
        };
        let name = batch_name(&name).map_err(|p| err(format!("{at}: [batch] name"), p))?;
        let settings = doc.batch;
        for (key, v) in [
            ("parallel", settings.parallel),
            ("per-instance", settings.per_instance),
        ] {
            if v == Some(0) {
                return Err(err(format!("{at}: [batch] {key}"), "must be at least 1"));
            }
        }
        if let Some(e) = &settings.engine {
            if !matches!(e.as_str(), "ec2" | "aws-batch") {
                return Err(err(
                    format!("{at}: [batch] engine"),
                    format!("'{e}' is not an engine (ec2 or aws-batch)"),
                ));
            }
        }
        for (key, v) in [("price", settings.price), ("max-cost", settings.max_cost)] {
            if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                return Err(err(
                    format!("{at}: [batch] {key}"),
                    "must be an amount in US dollars above zero",
                ));
            }
        }
        if let Some(o) = &settings.on_budget {
            crate::cost::OnBudget::parse(o)
                .map_err(|p| err(format!("{at}: [batch] on-budget"), p))?;
        }
        if let Some(s) = &settings.submit {
            if !matches!(s.as_str(), "array" | "per-row") {
                return Err(err(
                    format!("{at}: [batch] submit"),
                    format!("'{s}' is not a way to submit (array or per-row)"),
                ));
            }
        }
        let (csv, rows) = match &settings.csv {
            None => (
                None,
                vec![Row {
                    number: 1,
                    line: 0,
                    values: BTreeMap::new(),
                }],
            ),
            Some(rel) => {
                let file = path.parent().unwrap_or(Path::new(".")).join(rel);
                let (header, rows) = read_csv(&file)?;
                (Some((file, header)), rows)
            }
        };
        Ok(BatchFile {
            path: path.to_path_buf(),
            name,
            settings,
            template,
            csv,
            rows,
        })
    }
}

/// A batch name is part of job ids, tags and folder names: letters, digits, `-`, `_`, `.`.
/// A file name with other characters (spaces) gets `-` for them.
fn batch_name(raw: &str) -> Result<String, String> {
    let name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-').to_string();
    if name.is_empty() || name.len() > 48 {
        return Err(format!(
            "'{raw}' cannot name a batch (1 to 48 letters, digits, -, _ or .)"
        ));
    }
    Ok(name)
}

/// The header and the data rows: RFC 4180 (a quoted field may hold commas and newlines),
/// values trimmed of surrounding whitespace and CR, blank lines skipped.
fn read_csv(file: &Path) -> Result<(Vec<String>, Vec<Row>), FileError> {
    let at = file.display().to_string();
    let bytes = std::fs::read(file).map_err(|e| err(&at, format!("cannot read it: {e}")))?;
    // Line numbers from byte offsets: what an editor shows, blank lines counted.
    // (csv's position is where the record's reading began: at the line ending before it.)
    let line_at = |byte: u64| {
        let mut start = (byte as usize).min(bytes.len());
        while start < bytes.len() && matches!(bytes[start], b'\r' | b'\n') {
            start += 1;
        }
        bytes[..start].iter().filter(|b| **b == b'\n').count() as u64 + 1
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes.as_slice());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| err(&at, csv_problem(&e)))?
        .iter()
        .map(str::to_string)
        .collect();
    if header.iter().all(String::is_empty) {
        return Err(err(&at, "has no header line (the column names)"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for h in &header {
        if !seen.insert(h) {
            return Err(err(
                &at,
                format!("the column '{h}' appears twice in the header"),
            ));
        }
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| {
            let line = e.position().map(|p| line_at(p.byte())).unwrap_or(0);
            err(
                format!("{at}: row {} (line {line})", i + 1),
                csv_problem(&e),
            )
        })?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        let line = record.position().map(|p| line_at(p.byte())).unwrap_or(0);
        rows.push(Row {
            number: rows.len() + 1,
            line,
            values: header
                .iter()
                .cloned()
                .zip(record.iter().map(str::to_string))
                .collect(),
        });
    }
    if rows.is_empty() {
        return Err(err(&at, "has a header but no data rows"));
    }
    Ok((header, rows))
}

fn csv_problem(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("has {len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "is not UTF-8 text".into(),
        csv::ErrorKind::Io(io) => io.to_string(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn rows_are_trimmed_quoted_and_blank_lines_skipped() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "jobs.csv",
            "job number, scene name ,list\r\n 1 ,\"a, b\",\"{'x', 'y'}\"\r\n\r\n2,c,[1 2]\r\n",
        );
        let f = write(
            d.path(),
            "my batch.toml",
            "[batch]\ncsv = \"jobs.csv\"\n[job]\ncommand = \"x\"\n",
        );
        let b = BatchFile::load(&f).unwrap();
        assert_eq!(b.name, "my-batch");
        assert_eq!(
            b.csv.as_ref().unwrap().1,
            ["job number", "scene name", "list"]
        );
        assert_eq!(b.rows.len(), 2);
        assert_eq!(b.rows[0].values["scene name"], "a, b");
        assert_eq!(b.rows[0].values["list"], "{'x', 'y'}");
        assert_eq!(b.rows[0].values["job number"], "1");
        assert_eq!(b.rows[1].number, 2);
        assert_eq!(b.rows[1].line, 4);
    }

    #[test]
    fn bad_files_name_the_place() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "short.csv", "a,b\n1,2\n3\n");
        let cases: &[(&str, &str)] = &[
            ("[batch]\nparalel = 3\n[job]\n", "unknown field `paralel`"),
            (
                "[batch]\nparallel = 0\n[job]\n",
                "[batch] parallel: must be at least 1",
            ),
            ("[batch]\nengine = \"k8s\"\n[job]\n", "not an engine"),
            ("[batch]\n", "has no [job] table"),
            (
                "[batch]\ncsv = \"short.csv\"\n[job]\n",
                "row 2 (line 3): has 1 fields where the header has 2",
            ),
            (
                "[batch]\ncsv = \"missing.csv\"\n[job]\n",
                "missing.csv: cannot read it",
            ),
            ("[job\n", "line 1"),
        ];
        for (text, want) in cases {
            let f = write(d.path(), "b.toml", text);
            let e = BatchFile::load(&f).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
