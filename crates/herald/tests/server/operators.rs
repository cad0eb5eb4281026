//! The operator's first hour with the `herald` binary: start-up order,
//! warnings and error messages that say what to do.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

fn herald() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command.env_remove("HERALD_ADMIN_KEY").env("RUST_LOG", "warn");
    command
}

#[test]
fn a_port_in_use_fails_before_anything_is_created() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let output = herald()
        .args(["serve", "--listen", &addr, "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("cannot listen on {addr}")), "{stderr}");
    assert!(!data_dir.exists(), "no database or admin key was created: {stderr}");
}

#[test]
fn allowing_every_address_is_warned_about_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = herald()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--allow-target-cidr",
            "0.0.0.0/0",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("herald listening on"), "{line}");
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains("SSRF PROTECTION IS OFF"), "{stderr}");
}

#[test]
fn cidr_and_schedule_flags_accept_or_explain() {
    let output = herald()
        .args(["config", "--allow-target-cidr", "127.0.0.1,::1"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("127.0.0.1/32") && stdout.contains("::1/128"),
        "{stdout}"
    );

    let output = herald().args(["config", "--retry-schedule", "bogus"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(r#"invalid duration "bogus" in --retry-schedule: expected e.g. 5s,5m,30m"#),
        "{stderr}"
    );
}

/// The README's configuration table shows every setting `herald config`
/// prints, with the default written exactly as printed.
#[test]
fn the_readme_configuration_table_matches_herald_config() {
    let output = herald().arg("config").output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed: toml::Table = toml::from_str(&String::from_utf8(output.stdout).unwrap()).unwrap();
    let mut settings = Vec::new();
    for (name, value) in &printed {
        match value {
            toml::Value::Table(section) => {
                for (key, value) in section {
                    settings.push((format!("{name}.{key}"), value.clone()));
                }
            }
            value => settings.push((name.clone(), value.clone())),
        }
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme
        .split("## Configuration")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a Configuration section");
    let rows: Vec<(String, String)> = section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let default = cells.get(3)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((name.to_owned(), default.to_owned()))
        })
        .collect();
    for (name, value) in &settings {
        let Some((_, default)) = rows.iter().find(|(row, _)| row == name) else {
            panic!("the README's configuration table has no row for {name}");
        };
        let shown: toml::Table = toml::from_str(&format!("v = {default}"))
            .unwrap_or_else(|e| panic!("{name}: the README's default {default} is not a TOML value: {e}"));
        assert_eq!(&shown["v"], value, "{name}: the README says {default}");
    }
    assert_eq!(
        rows.len(),
        settings.len(),
        "the README lists settings herald config does not print"
    );
}
