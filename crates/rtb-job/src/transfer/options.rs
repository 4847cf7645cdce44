//! `INPUT_FLAGS` / `OUTPUT_FLAGS`: the subset of `aws s3 cp` flags the runner accepts, parsed once
//! into ready-to-use options (globs compiled, quiet resolved).

use globset::{GlobBuilder, GlobMatcher};

/// The flags a user may put in `INPUT_FLAGS` / `OUTPUT_FLAGS`, for error messages.
const SUPPORTED: &str = "--recursive, --exclude PATTERN, --include PATTERN, --quiet, \
                         --only-show-errors, --no-progress";

/// What one copy does, as `aws s3 cp` flags would say it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CopyOptions {
    /// Copy every object below a prefix (every file below a folder), not one object.
    pub recursive: bool,
    /// `--include` / `--exclude` in the order given; the last one that matches a path decides.
    pub filters: Vec<Filter>,
    /// No line per copied file (the summary line and warnings stay).
    pub quiet: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Include(Pattern),
    Exclude(Pattern),
}

/// A glob as aws-cli reads it (fnmatch): `*` and `?` also match `/`, `[abc]` and `[!abc]` are
/// classes; matched against the whole path relative to the copy's source folder or prefix.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    matcher: GlobMatcher,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagsError {
    #[error("{setting}: unsupported flag '{flag}' (supported: {SUPPORTED})")]
    Unsupported { setting: String, flag: String },
    #[error("{setting}: {flag} needs a PATTERN (for example {flag} '*.tmp')")]
    MissingPattern { setting: String, flag: String },
    #[error("{setting}: {flag} '{pattern}' is not a valid glob: {why}")]
    BadPattern {
        setting: String,
        flag: String,
        pattern: String,
        why: String,
    },
    #[error("{setting}: cannot split '{value}' into words (unbalanced quotes?)")]
    Quoting { setting: String, value: String },
}

impl Pattern {
    pub fn new(text: &str) -> Result<Self, globset::Error> {
        let matcher = GlobBuilder::new(text)
            .literal_separator(false)
            .backslash_escape(true)
            .build()?
            .compile_matcher();
        Ok(Pattern {
            text: text.to_string(),
            matcher,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn is_match(&self, relative: &str) -> bool {
        self.matcher.is_match(relative)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl CopyOptions {
    /// Parse a flags setting, split like a shell would. `setting` names it in errors.
    pub fn parse(setting: &str, value: &str) -> Result<Self, FlagsError> {
        let words = shlex::split(value).ok_or_else(|| FlagsError::Quoting {
            setting: setting.to_string(),
            value: value.to_string(),
        })?;
        let mut opts = CopyOptions::default();
        let mut words = words.into_iter();
        while let Some(word) = words.next() {
            // argparse (aws-cli) also accepts `--exclude=PATTERN`.
            let (flag, inline) = match word.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (word.clone(), None),
            };
            match flag.as_str() {
                "--recursive" | "--quiet" | "--only-show-errors" | "--no-progress"
                    if inline.is_some() =>
                {
                    return Err(FlagsError::Unsupported {
                        setting: setting.to_string(),
                        flag: word,
                    })
                }
                "--recursive" => opts.recursive = true,
                "--quiet" | "--only-show-errors" | "--no-progress" => opts.quiet = true,
                "--include" | "--exclude" => {
                    let pattern = inline.or_else(|| words.next()).ok_or_else(|| {
                        FlagsError::MissingPattern {
                            setting: setting.to_string(),
                            flag: flag.clone(),
                        }
                    })?;
                    let compiled = Pattern::new(&pattern).map_err(|e| FlagsError::BadPattern {
                        setting: setting.to_string(),
                        flag: flag.clone(),
                        pattern: pattern.clone(),
                        why: e.kind().to_string(),
                    })?;
                    opts.filters.push(if flag == "--include" {
                        Filter::Include(compiled)
                    } else {
                        Filter::Exclude(compiled)
                    });
                }
                _ => {
                    return Err(FlagsError::Unsupported {
                        setting: setting.to_string(),
                        flag: word,
                    })
                }
            }
        }
        Ok(opts)
    }

    /// Whether a path (relative to the source folder or prefix, `/`-separated) is copied:
    /// everything is by default, and the last filter that matches decides (aws-cli's rule).
    pub fn includes(&self, relative: &str) -> bool {
        self.filters
            .iter()
            .rev()
            .find_map(|f| match f {
                Filter::Include(p) if p.is_match(relative) => Some(true),
                Filter::Exclude(p) if p.is_match(relative) => Some(false),
                _ => None,
            })
            .unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Result<CopyOptions, FlagsError> {
        CopyOptions::parse("INPUT_FLAGS", v)
    }

    fn inc(p: &str) -> Filter {
        Filter::Include(Pattern::new(p).unwrap())
    }

    fn exc(p: &str) -> Filter {
        Filter::Exclude(Pattern::new(p).unwrap())
    }

    #[test]
    fn accepted_flags() {
        let table: Vec<(&str, CopyOptions)> = vec![
            ("", CopyOptions::default()),
            ("   ", CopyOptions::default()),
            (
                "--recursive",
                CopyOptions {
                    recursive: true,
                    ..Default::default()
                },
            ),
            (
                "--quiet",
                CopyOptions {
                    quiet: true,
                    ..Default::default()
                },
            ),
            (
                "--only-show-errors --no-progress",
                CopyOptions {
                    quiet: true,
                    ..Default::default()
                },
            ),
            (
                "--recursive --exclude '*.tmp' --include 'keep me/*.tmp'",
                CopyOptions {
                    recursive: true,
                    filters: vec![exc("*.tmp"), inc("keep me/*.tmp")],
                    quiet: false,
                },
            ),
            (
                "--exclude=* --include=\"*.mat\"",
                CopyOptions {
                    filters: vec![exc("*"), inc("*.mat")],
                    ..Default::default()
                },
            ),
        ];
        for (value, want) in table {
            assert_eq!(parse(value).unwrap(), want, "parsing {value:?}");
        }
    }

    #[test]
    fn refused_flags_name_the_setting_and_flag() {
        let table = [
            ("--sse", "INPUT_FLAGS: unsupported flag '--sse' (supported: --recursive, --exclude PATTERN, --include PATTERN, --quiet"),
            ("--recursive --dryrun", "unsupported flag '--dryrun'"),
            ("stray", "unsupported flag 'stray'"),
            ("--recursive=yes", "unsupported flag '--recursive=yes'"),
            ("--exclude", "INPUT_FLAGS: --exclude needs a PATTERN"),
            ("--recursive --include", "--include needs a PATTERN"),
            ("--exclude 'a[b'", "--exclude 'a[b' is not a valid glob"),
            ("--exclude 'unterminated", "cannot split"),
        ];
        for (value, want) in table {
            let got = parse(value).unwrap_err().to_string();
            assert!(got.contains(want), "{value:?}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn filters_follow_aws_cli() {
        // (flags, path, copied?)
        let table = [
            ("", "a/b.txt", true),
            ("--exclude '*'", "a/b.txt", false),
            // `*` crosses folders.
            ("--exclude '*.tmp'", "deep/er/x.tmp", false),
            ("--exclude '*.tmp'", "x.tmp.keep", true),
            // The last matching filter wins, in both directions.
            ("--exclude '*' --include '*.mat'", "out/r.mat", true),
            ("--exclude '*' --include '*.mat'", "out/r.png", false),
            ("--include '*.mat' --exclude '*'", "out/r.mat", false),
            (
                "--exclude 'logs/*' --include 'logs/keep*'",
                "logs/keep.txt",
                true,
            ),
            (
                "--exclude 'logs/*' --include 'logs/keep*'",
                "logs/drop.txt",
                false,
            ),
            // Patterns match the whole relative path, not a basename.
            ("--exclude 'b.txt'", "a/b.txt", true),
            ("--exclude 'a/b.txt'", "a/b.txt", false),
            ("--exclude '?.txt'", "a.txt", false),
            ("--exclude 'sp ace/*'", "sp ace/ü.txt", false),
            ("--exclude '[!a]*'", "b", false),
            ("--exclude '[!a]*'", "a", true),
        ];
        for (flags, path, want) in table {
            let opts = parse(flags).unwrap();
            assert_eq!(opts.includes(path), want, "{flags:?} on {path:?}");
        }
    }
}
