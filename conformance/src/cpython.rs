//! The CPython interpreters a run compares with: given with `--python PATH`, found
//! under pyenv (`$PYENV_ROOT/versions/3.X.Y/bin/python3`, `~/.pyenv` by default), or,
//! for a version pyenv does not have, as `python3.X` on `PATH`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// CPython minor versions compared (3.7 … 3.13).
pub const MINORS: std::ops::RangeInclusive<u32> = 7..=13;

/// The Python runner of scenarios (`cpython/runner.py`), built into the crate.
pub const RUNNER_PY: &str = include_str!("../cpython/runner.py");

/// The policy checks in Python (`cpython/policy_checks.py`), built into the crate.
pub const POLICY_CHECKS_PY: &str = include_str!("../cpython/policy_checks.py");

/// One interpreter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CPython {
    /// Its minor version: 3.`minor`.
    pub minor: u32,
    /// The executable.
    pub path: PathBuf,
}

impl CPython {
    /// `cpython3.X`, as backends are named.
    pub fn label(&self) -> String {
        format!("cpython3.{}", self.minor)
    }

    /// A command that runs `script` (Python source) under this interpreter, with
    /// `args` as `sys.argv[1:]`, in isolated mode (`-I`: neither the current
    /// directory nor `PYTHON*` variables nor the user's site-packages change what
    /// it imports).
    pub fn script(&self, script: &str, args: &[&str]) -> Command {
        let mut command = Command::new(&self.path);
        command.arg("-I").arg("-c").arg(script).args(args);
        command
    }
}

/// The interpreters found, at most one per minor version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pythons {
    found: BTreeMap<u32, CPython>,
    /// Where discovery looked, for the notice when nothing was found.
    looked: Vec<String>,
}

impl Pythons {
    /// No interpreter.
    pub fn none() -> Pythons {
        Pythons::default()
    }

    /// The interpreters of pyenv, and for the versions pyenv lacks, `python3.X` on
    /// `PATH` (each checked by asking it its version).
    pub fn discover() -> Pythons {
        let mut pythons = Pythons::none();
        let root = pyenv_root();
        if let Some(root) = &root {
            pythons.looked.push(format!("{}/versions", root.display()));
            for minor in MINORS {
                if let Some(path) = in_pyenv(root, minor) {
                    pythons.found.insert(minor, CPython { minor, path });
                }
            }
        }
        let missing: Vec<u32> = MINORS.filter(|m| !pythons.found.contains_key(m)).collect();
        if !missing.is_empty() {
            pythons.looked.push("python3.7 … python3.13 on PATH".into());
            for minor in missing {
                let Some(path) = on_path(&format!("python3.{minor}")) else {
                    continue;
                };
                if version_of(&path).ok() == Some((3, minor)) {
                    pythons.found.insert(minor, CPython { minor, path });
                }
            }
        }
        pythons
    }

    /// `given` (interpreters named with `--python`, each asked its version), and
    /// when `discover` is set, what [`Pythons::discover`] finds for the other
    /// versions.
    ///
    /// # Errors
    ///
    /// [`Error::BadArgument`] for an interpreter that does not run or is not CPython
    /// 3.7–3.13.
    pub fn with(given: &[PathBuf], discover: bool) -> Result<Pythons, Error> {
        let mut pythons = if discover {
            Pythons::discover()
        } else {
            Pythons::none()
        };
        for path in given {
            let refuse = |message: String| Error::BadArgument {
                argument: "--python",
                message: format!("{}: {message}", path.display()),
            };
            let (major, minor) = version_of(path).map_err(refuse)?;
            if major != 3 || !MINORS.contains(&minor) {
                return Err(refuse(format!(
                    "is Python {major}.{minor}; the suite compares with CPython 3.7 to 3.13"
                )));
            }
            pythons.found.insert(
                minor,
                CPython {
                    minor,
                    path: path.clone(),
                },
            );
        }
        Ok(pythons)
    }

    /// The interpreter of 3.`minor`, if found.
    pub fn get(&self, minor: u32) -> Option<&CPython> {
        self.found.get(&minor)
    }

    /// The interpreter of 3.`minor`.
    ///
    /// # Errors
    ///
    /// [`Error::NoCPython`], listing the interpreters found.
    pub fn require(&self, minor: u32) -> Result<&CPython, Error> {
        self.get(minor).ok_or_else(|| Error::NoCPython {
            minor,
            found: self
                .iter()
                .map(|p| format!("{} ({})", p.label(), p.path.display()))
                .collect(),
        })
    }

    /// The interpreters, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &CPython> {
        self.found.values()
    }

    /// Whether none was found.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// `3.7, 3.8, 3.12`: the versions found.
    pub fn versions(&self) -> String {
        self.found
            .keys()
            .map(|m| format!("3.{m}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Where discovery looked (empty when it did not), for a notice.
    pub fn looked(&self) -> &[String] {
        &self.looked
    }
}

/// `$PYENV_ROOT`, else `~/.pyenv`, if that directory exists.
fn pyenv_root() -> Option<PathBuf> {
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv")))?;
    root.is_dir().then_some(root)
}

/// The newest 3.`minor`.Z under pyenv's `versions`.
fn in_pyenv(root: &Path, minor: u32) -> Option<PathBuf> {
    let prefix = format!("3.{minor}.");
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(root.join("versions"))
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let patch: u32 = name.strip_prefix(&prefix)?.parse().ok()?;
            let path = e.path().join("bin").join("python3");
            path.exists().then_some((patch, path))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, path)| path)
}

/// The first executable file called `name` in a directory of `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Asks the interpreter at `path` its version: (major, minor).
fn version_of(path: &Path) -> Result<(u32, u32), String> {
    let out = Command::new(path)
        .args(["-c", "import sys; print('%d %d' % sys.version_info[:2])"])
        .output()
        .map_err(|e| format!("cannot run it: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "it exited with {} when asked its version",
            out.status
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace().map(str::parse::<u32>);
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => Ok((major, minor)),
        _ => Err(format!("not a Python interpreter (it printed {text:?})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interpreter_that_does_not_run_is_refused() {
        // Goal: `--python` with something that is not a Python interpreter is bad
        // input naming the path, not a panic or a silent skip.
        let missing = PathBuf::from("no-such-dir/python3.12");
        let error = Pythons::with(std::slice::from_ref(&missing), false).unwrap_err();
        assert!(error.is_bad_input(), "{error}");
        assert!(
            error.to_string().contains("no-such-dir/python3.12"),
            "{error}"
        );
        // `true` (found on PATH) runs, and prints no version.
        let error = Pythons::with(&[PathBuf::from("true")], false).unwrap_err();
        assert!(
            error.to_string().contains("not a Python interpreter"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_version_names_the_ones_found() {
        // Goal: asking for a CPython that is not there lists those that are.
        let mut pythons = Pythons::none();
        assert!(
            pythons
                .require(12)
                .unwrap_err()
                .to_string()
                .contains("no other CPython")
        );
        pythons.found.insert(
            8,
            CPython {
                minor: 8,
                path: "py/bin/python3".into(),
            },
        );
        let error = pythons.require(99).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(
            error
                .to_string()
                .contains("found: cpython3.8 (py/bin/python3)"),
            "{error}"
        );
    }
}
