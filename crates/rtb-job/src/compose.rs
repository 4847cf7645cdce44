//! Which interpreter runs the job, and the MATLAB code and command line it is given.
//!
//! The job's STARTUP, TOOLBOXES and COMMAND go into a generated script file as *string
//! literals* that the script `eval`s inside one try/catch. So no value, whatever quotes or
//! newlines it holds, can break the script's syntax, a syntax error in COMMAND is caught like
//! any other error, and the command line itself carries only a path we chose.

use std::path::{Path, PathBuf};

/// How MATLAB is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatlabStyle {
    /// `-batch`: R2019a and later; non-interactive, exit code from `exit`.
    Batch,
    /// `-r` with an explicit exit: older releases (the original image used R2015b/R2016a).
    R,
    /// Read the release from `VersionInfo.xml` next to the executable.
    Auto,
}

impl MatlabStyle {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "batch" => Some(Self::Batch),
            "r" => Some(Self::R),
            "auto" | "" => Some(Self::Auto),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Matlab {
        style: MatlabStyle,
        preload: Option<PathBuf>,
    },
    Octave,
}

/// A resolved interpreter: what kind, and the executable's full path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    pub kind: Kind,
    pub executable: PathBuf,
}

impl Interpreter {
    /// Resolve `name` (a name on PATH or a path) and decide how to start it.
    pub fn resolve(name: &str, style: MatlabStyle, preload: &str) -> Result<Self, String> {
        let name = name.trim();
        let base = Path::new(name)
            .file_name()
            .and_then(|b| b.to_str())
            .unwrap_or_default();
        let is_octave = base.starts_with("octave");
        if !is_octave && base != "matlab" {
            return Err(format!(
                "unknown interpreter '{name}': use matlab (or a path ending in /matlab), octave or octave-cli"
            ));
        }
        let executable = find_executable(name).ok_or_else(|| {
            if is_octave {
                format!("'{name}' was not found on PATH; install GNU Octave in the image")
            } else {
                format!(
                    "'{name}' was not found on PATH; mount MATLAB at {} (docker run -v /usr/local/MATLAB/R20xx:{}) or set MATLAB_EXECUTABLE",
                    rtb_model::contract::MATLAB_MOUNT_POINT,
                    rtb_model::contract::MATLAB_MOUNT_POINT
                )
            }
        })?;
        let kind = if is_octave {
            Kind::Octave
        } else {
            let style = match style {
                MatlabStyle::Auto => detect_style(&executable),
                s => s,
            };
            // Preloading a library that is not there would stop MATLAB from starting at all.
            let preload = Some(PathBuf::from(preload.trim()))
                .filter(|p| !p.as_os_str().is_empty() && p.exists());
            Kind::Matlab { style, preload }
        };
        Ok(Interpreter { kind, executable })
    }

    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Matlab { .. } => "matlab",
            Kind::Octave => "octave",
        }
    }

    /// The arguments that run the generated script at `script` (an absolute path).
    pub fn args(&self, script: &Path) -> Vec<String> {
        let run = format!("run({})", matlab_string(&script.display().to_string()));
        match &self.kind {
            Kind::Octave => vec![
                "--no-gui".into(),
                "--quiet".into(),
                "--no-window-system".into(),
                "--eval".into(),
                run,
            ],
            Kind::Matlab {
                style: MatlabStyle::R,
                ..
            } => vec![
                "-nodisplay".into(),
                "-nosplash".into(),
                "-nodesktop".into(),
                "-r".into(),
                // With -r MATLAB stays at its prompt unless told to exit, even when run() fails.
                format!("try, {run}, catch, exit(1), end, exit(1)"),
            ],
            Kind::Matlab { .. } => vec!["-nodisplay".into(), "-batch".into(), run],
        }
    }

    /// Extra environment for the interpreter process.
    pub fn env(&self) -> Vec<(String, String)> {
        match &self.kind {
            Kind::Matlab {
                preload: Some(p), ..
            } => vec![("LD_PRELOAD".into(), p.display().to_string())],
            _ => vec![],
        }
    }
}

/// Search PATH the way a shell would; a name with a `/` is taken as a path.
pub(crate) fn find_executable(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_exec(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_exec(p))
}

/// `-batch` exists from R2019a; read the release from `<root>/VersionInfo.xml`, where the
/// executable is `<root>/bin/matlab`. Unknown releases get `-batch`.
fn detect_style(executable: &Path) -> MatlabStyle {
    let executable = executable
        .canonicalize()
        .unwrap_or_else(|_| executable.to_path_buf());
    let info = executable
        .parent()
        .and_then(Path::parent)
        .map(|root| root.join("VersionInfo.xml"))
        .and_then(|p| std::fs::read_to_string(p).ok());
    match info.as_deref().and_then(release_year) {
        Some((year, half)) if (year, half) < (2019, 'a') => MatlabStyle::R,
        _ => MatlabStyle::Batch,
    }
}

/// `<release>R2016a</release>` -> (2016, 'a').
fn release_year(xml: &str) -> Option<(u32, char)> {
    let start = xml.find("<release>")? + "<release>".len();
    let rel = xml[start..].trim_start().strip_prefix('R')?;
    let year = rel.get(..4)?.parse().ok()?;
    let half = rel.chars().nth(4)?;
    Some((year, half))
}

/// A MATLAB expression whose value is exactly `s`: a single-quoted literal with quotes
/// doubled, and control characters (which a literal cannot hold) spliced in with char(N).
pub fn matlab_string(s: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut literal = String::new();
    for c in s.chars() {
        if c.is_control() {
            if !literal.is_empty() {
                parts.push(format!("'{}'", std::mem::take(&mut literal)));
            }
            parts.push(format!("char({})", c as u32));
        } else if c == '\'' {
            literal.push_str("''");
        } else {
            literal.push(c);
        }
    }
    if !literal.is_empty() || parts.is_empty() {
        parts.push(format!("'{literal}'"));
    }
    if parts.len() == 1 {
        parts.remove(0)
    } else {
        format!("[{}]", parts.join(" "))
    }
}

/// MATLAB's run() accepts a script path without `.m` (the original's STARTUP values had
/// none); Octave's source() needs the file's real name.
fn octave_script_path(startup: &str) -> String {
    let p = Path::new(startup);
    if p.extension().is_none() && !p.exists() {
        format!("{startup}.m")
    } else {
        startup.to_string()
    }
}

/// What the generated script runs.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    pub startup: Option<&'a str>,
    pub toolboxes: &'a str,
    pub command: &'a str,
    pub output_scratch: &'a Path,
    /// Where the script writes the command's error message, for the result record.
    pub error_file: &'a Path,
    pub octave: bool,
}

/// The generated script. Variables it needs end in `__` so they do not collide with the
/// job's own; the workspace snapshot is saved whether the command succeeded or not.
pub fn script(job: &Job<'_>) -> String {
    let mut s = String::from("% Generated by rtb-job: runs STARTUP, TOOLBOXES and COMMAND.\n");
    if job.octave {
        // Octave buffers output written to a pipe; the log must stream line by line.
        s.push_str("page_output_immediately(true); page_screen_output(false);\n");
    }
    s.push_str(&format!(
        "rtbJobStatus__ = 0;\nrtbJobErrorFile__ = {};\ntry\n",
        matlab_string(&job.error_file.display().to_string())
    ));
    if let Some(startup) = job.startup {
        if job.octave {
            // Octave's run() splices the path into code unquoted; source() takes it as data.
            s.push_str(&format!(
                "  source({});\n",
                matlab_string(&octave_script_path(startup))
            ));
        } else {
            s.push_str(&format!("  run({});\n", matlab_string(startup)));
        }
    }
    s.push_str(&format!(
        "  if exist('tbUse', 'file')\n    eval({});\n  end\n",
        matlab_string(&format!("tbUse({});", job.toolboxes))
    ));
    s.push_str(&format!("  eval({});\n", matlab_string(job.command)));
    s.push_str(
        "catch rtbJobError__\n\
         \x20 rtbJobStatus__ = 1;\n\
         \x20 fprintf(2, 'rtb-job: the command failed: %s\\n', rtbJobError__.message);\n\
         \x20 rtbJobFid__ = fopen(rtbJobErrorFile__, 'w');\n\
         \x20 if rtbJobFid__ >= 0, fprintf(rtbJobFid__, '%s', rtbJobError__.message); fclose(rtbJobFid__); end\n\
         \x20 if ~exist('OCTAVE_VERSION', 'builtin')\n\
         \x20   fprintf(2, '%s\\n', getReport(rtbJobError__, 'extended', 'hyperlinks', 'off'));\n\
         \x20 end\n\
         end\n\
         clear rtbJobError__\n\
         try\n",
    );
    s.push_str(&format!(
        "  save(fullfile({}, sprintf('rtb-job-%s.mat', datestr(now(), 30))), '-v7');\n",
        matlab_string(&job.output_scratch.display().to_string())
    ));
    s.push_str(
        "catch rtbJobSaveError__\n\
         \x20 fprintf(2, 'rtb-job: could not save the workspace: %s\\n', rtbJobSaveError__.message);\n\
         end\n\
         exit(rtbJobStatus__);\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_literals() {
        assert_eq!(matlab_string(""), "''");
        assert_eq!(matlab_string("abc"), "'abc'");
        assert_eq!(matlab_string("it's"), "'it''s'");
        assert_eq!(matlab_string("a\nb"), "['a' char(10) 'b']");
        assert_eq!(matlab_string("\n"), "char(10)");
        assert_eq!(matlab_string("x\t"), "['x' char(9)]");
    }

    #[test]
    fn release_parsing() {
        assert_eq!(
            release_year("<x><release>R2016a</release></x>"),
            Some((2016, 'a'))
        );
        assert_eq!(release_year("<release>R2019b</release>"), Some((2019, 'b')));
        assert_eq!(release_year("nothing"), None);
    }

    #[test]
    fn style_from_version_info() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        let exe = dir.path().join("bin/matlab");
        std::fs::write(&exe, "").unwrap();
        assert_eq!(detect_style(&exe), MatlabStyle::Batch);
        std::fs::write(
            dir.path().join("VersionInfo.xml"),
            "<version>8.6</version><release>R2015b</release>",
        )
        .unwrap();
        assert_eq!(detect_style(&exe), MatlabStyle::R);
    }

    #[test]
    fn command_lines() {
        let script = Path::new("/tmp/rtb job/rtb_job_main.m");
        let i = Interpreter {
            kind: Kind::Octave,
            executable: "/usr/bin/octave-cli".into(),
        };
        assert_eq!(
            i.args(script).last().unwrap(),
            "run('/tmp/rtb job/rtb_job_main.m')"
        );
        let m = Interpreter {
            kind: Kind::Matlab {
                style: MatlabStyle::R,
                preload: Some("/lib/libstdc++.so.6".into()),
            },
            executable: "/m/bin/matlab".into(),
        };
        let args = m.args(script);
        assert_eq!(args[3], "-r");
        assert!(args[4].ends_with("exit(1)"), "{args:?}");
        assert_eq!(m.env()[0].0, "LD_PRELOAD");
    }

    #[test]
    fn unknown_interpreters_are_refused() {
        let e = Interpreter::resolve("python3", MatlabStyle::Auto, "").unwrap_err();
        assert!(e.contains("unknown interpreter 'python3'"), "{e}");
        let e = Interpreter::resolve("/nowhere/matlab", MatlabStyle::Auto, "").unwrap_err();
        assert!(e.contains("not found"), "{e}");
    }

    #[test]
    fn script_holds_values_only_as_literals() {
        let s = script(&Job {
            startup: Some("/home/u/startup'x"),
            toolboxes: "{'isetbio'}",
            command: "disp('a')\nerror('b')",
            output_scratch: Path::new("/out"),
            error_file: Path::new("/tmp/e"),
            octave: true,
        });
        assert!(s.contains("source('/home/u/startup''x.m');"), "{s}");
        assert!(s.contains("eval('tbUse({''isetbio''});');"), "{s}");
        assert!(
            s.contains("eval(['disp(''a'')' char(10) 'error(''b'')']);"),
            "{s}"
        );
        let m = script(&Job {
            startup: Some("/home/u/startup"),
            toolboxes: "''",
            command: "ver",
            output_scratch: Path::new("/out"),
            error_file: Path::new("/tmp/e"),
            octave: false,
        });
        assert!(
            m.contains("run('/home/u/startup');") && !m.contains("page_output"),
            "{m}"
        );
    }
}
