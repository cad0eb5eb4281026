//! Runs one of the interop tests' Python scripts: the JSON `input` on its
//! stdin, the JSON it prints on stdout; a failing script fails the test with
//! its stderr.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// `script` is a file name under `tests/server/`.
pub fn run_json_script(python: &Path, script: &str, input: &Value) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/server").join(script);
    let mut child = Command::new(python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    if let Some(mut stdin) = child.stdin.take() {
        std::io::Write::write_all(&mut stdin, input.to_string().as_bytes()).expect("input written");
    }
    let output = child.wait_with_output().expect("python finishes");
    assert!(
        output.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the script prints JSON")
}
