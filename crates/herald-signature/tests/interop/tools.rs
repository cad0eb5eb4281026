//! Making the Python and Node environments the interop tests run in.
//!
//! Each environment lives under `CARGO_TARGET_TMPDIR` and is built once:
//! the first test process takes a lock (an atomically created directory),
//! installs the pinned packages, then writes a marker naming them; other
//! processes (nextest runs each test in its own) wait for the marker. A lock
//! left by a killed process is taken over after ten minutes. A missing
//! `python3`, `node` or `npm`, or a failed install, fails the test with the
//! reason: these tests are never skipped silently.

use std::fs;
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

/// Pinned so that a failure means a change in Herald, not in a dependency.
pub const PYTHON_PACKAGES: [&str; 3] = ["standardwebhooks==1.1.0", "cryptography==50.0.2", "pyjwt==2.15.1"];
pub const NODE_PACKAGES: [&str; 1] = ["standardwebhooks@1.1.1"];

const LOCK_STALE_AFTER: Duration = Duration::from_secs(600);
const SETUP_TIMEOUT: Duration = Duration::from_secs(900);

/// The venv's Python interpreter, with [`PYTHON_PACKAGES`] installed.
pub fn python() -> PathBuf {
    let venv = ready("interop-venv", &PYTHON_PACKAGES.join(" "), |dir| {
        let python3 = which("python3").unwrap_or_else(|| {
            panic!("interop tests need `python3` (with the venv module) on PATH and access to PyPI; install it, e.g. `apt-get install python3 python3-venv`")
        });
        run_setup(Command::new(python3).arg("-m").arg("venv").arg(dir))?;
        run_setup(
            Command::new(dir.join("bin/python"))
                .args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet"])
                .args(PYTHON_PACKAGES),
        )
    });
    venv.join("bin/python")
}

/// The `node_modules` directory with [`NODE_PACKAGES`] installed.
pub fn node_modules() -> PathBuf {
    let prefix = ready("interop-node", &NODE_PACKAGES.join(" "), |dir| {
        let npm = which("npm")
            .unwrap_or_else(|| panic!("interop tests need `node` and `npm` on PATH and access to the npm registry"));
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        run_setup(
            Command::new(npm)
                .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
                .arg(dir)
                .args(NODE_PACKAGES),
        )
    });
    prefix.join("node_modules")
}

/// The `node` interpreter.
pub fn node() -> PathBuf {
    which("node").unwrap_or_else(|| panic!("interop tests need `node` on PATH"))
}

/// Runs `program script` with `input` as JSON on stdin and returns its
/// stdout parsed as JSON. Panics with the script's stderr if it fails.
pub fn run_script(program: &Path, script: &str, env: &[(&str, &Path)], input: &Value) -> Value {
    let script_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop").join(script);
    let mut command = Command::new(program);
    command
        .arg(&script_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("writing to {script}: {e}"));
    }
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {script}: {e}"));
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// `CARGO_TARGET_TMPDIR/<name>`, built by `setup` unless its marker already
/// names `packages`.
fn ready(name: &str, packages: &str, setup: impl FnOnce(&Path) -> Result<(), String>) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = root.join(name);
    let marker = dir.join(".herald-interop-ready");
    let is_ready = || fs::read_to_string(&marker).is_ok_and(|content| content == packages);
    if is_ready() {
        return dir;
    }
    let lock = root.join(format!("{name}.lock"));
    let started = Instant::now();
    loop {
        match fs::create_dir(&lock) {
            Ok(()) => break,
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {
                if is_ready() {
                    return dir;
                }
                if is_stale(&lock) {
                    let _ = fs::remove_dir(&lock);
                    continue;
                }
                assert!(
                    started.elapsed() < SETUP_TIMEOUT,
                    "timed out waiting for another test to build {}",
                    dir.display()
                );
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(error) => panic!("cannot create lock {}: {error}", lock.display()),
        }
    }
    let _unlock = Unlock(lock);
    if !is_ready() {
        let _ = fs::remove_dir_all(&dir);
        let started = Instant::now();
        setup(&dir).unwrap_or_else(|error| panic!("building {} failed: {error}", dir.display()));
        fs::write(&marker, packages).unwrap_or_else(|e| panic!("writing {}: {e}", marker.display()));
        eprintln!(
            "built {} ({packages}) in {:.1} s",
            dir.display(),
            started.elapsed().as_secs_f64()
        );
    }
    dir
}

fn is_stale(lock: &Path) -> bool {
    fs::metadata(lock)
        .and_then(|metadata| metadata.modified())
        .is_ok_and(|modified| SystemTime::now().duration_since(modified).unwrap_or_default() > LOCK_STALE_AFTER)
}

/// Releases the lock even if setup panics.
struct Unlock(PathBuf);

impl Drop for Unlock {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

fn run_setup(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} exited with {}:\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
