//! The `herald` binary as an operator runs it: first start, configuration
//! layering, and a clean stop on SIGTERM.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn herald() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command.env_remove("HERALD_ADMIN_KEY").env("RUST_LOG", "warn");
    command
}

#[test]
fn first_start_generates_and_shows_the_admin_key_once_then_sigterm_stops_cleanly() {
    let data_dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut child = herald()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.starts_with("herald listening on http://127.0.0.1:"), "{line}");
        child
    };
    let stop = |mut child: std::process::Child| -> String {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        let exit = loop {
            if let Some(exit) = child.try_wait().unwrap() {
                break exit;
            }
            assert!(Instant::now() < deadline, "herald did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(exit.success(), "SIGTERM is a clean stop: {exit:?}");
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        stderr
    };

    let stderr = stop(start());
    let key_file = data_dir.path().join("admin.key");
    let key = std::fs::read_to_string(&key_file).unwrap().trim().to_owned();
    assert!(key.len() >= 32, "{key}");
    assert!(
        stderr.contains(&key),
        "the generated key is shown at first start: {stderr}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "only the owner may read the admin key");
    }

    let stderr = stop(start());
    assert!(!stderr.contains(&key), "the key is shown only once: {stderr}");
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap().trim(),
        key,
        "the key is kept"
    );
}

#[test]
fn config_layers_file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:7000\"\n[delivery]\ntimeout = \"20s\"\nmax_in_flight = 100\n[security]\nallow_target_cidrs = [\"10.0.0.0/8\"]\n",
    )
    .unwrap();
    let output = herald()
        .args(["config", "--config"])
        .arg(&file)
        .env("HERALD_DELIVERY_TIMEOUT", "25s")
        .env("HERALD_MAX_IN_FLIGHT", "200")
        .args(["--max-in-flight", "300", "--allow-target-cidr", "127.0.0.0/8"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed: toml::Value = toml::from_str(&String::from_utf8(output.stdout).unwrap()).unwrap();
    assert_eq!(printed["listen"].as_str(), Some("127.0.0.1:7000"), "from the file");
    assert_eq!(
        printed["delivery"]["timeout"].as_str(),
        Some("25s"),
        "the environment beats the file"
    );
    assert_eq!(
        printed["delivery"]["max_in_flight"].as_integer(),
        Some(300),
        "a flag beats the environment"
    );
    assert_eq!(
        printed["delivery"]["max_in_flight_per_endpoint"].as_integer(),
        Some(64),
        "defaults fill the rest"
    );
    let cidrs: Vec<&str> = printed["security"]["allow_target_cidrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(cidrs, ["10.0.0.0/8", "127.0.0.0/8"], "flags add ranges to the file's");

    for (args, complaint) in [
        (vec!["config", "--delivery-timeout", "0s"], "delivery.timeout"),
        (vec!["config", "--allow-target-cidr", "not-a-cidr"], "not-a-cidr"),
        (
            vec!["config", "--config", "/nonexistent/herald.toml"],
            "/nonexistent/herald.toml",
        ),
    ] {
        let output = herald().args(&args).output().unwrap();
        assert!(!output.status.success(), "{args:?} must fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(complaint), "{args:?}: {stderr}");
    }
}

/// `herald migrate` brings the schema up to date; on PostgreSQL several
/// nodes migrating at once apply each migration exactly once (advisory lock).
#[tokio::test]
async fn migrate_applies_the_schema_once_even_when_nodes_race() {
    use crate::support::backend::{Backend, backend, fresh_database};
    let data_dir = tempfile::tempdir().unwrap();
    let database_url = match backend() {
        Backend::Postgres => Some(fresh_database().await),
        Backend::Sqlite => None,
    };
    let migrate = || {
        let mut command = herald();
        command.arg("migrate").arg("--data-dir").arg(data_dir.path());
        if let Some(url) = &database_url {
            command
                .env("HERALD_DATABASE_URL", url)
                .env("HERALD_MASTER_KEY", crate::support::backend::TEST_MASTER_KEY);
        }
        command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };
    let racers = if database_url.is_some() { 4 } else { 1 };
    let children: Vec<_> = (0..racers).map(|_| migrate()).collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(stdout.starts_with("schema is at version "), "{stdout}");
    }
    match &database_url {
        Some(url) => {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            let rows: i64 = client
                .query_one("SELECT COUNT(*) FROM schema_migrations WHERE version = 1", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(rows, 1, "one migration, applied once");
        }
        None => assert!(data_dir.path().join("herald.db").exists()),
    }
}
