//! The command line: `--help`, configuration errors and `processor migrate`.

mod support;

use std::process::Command;

use support::TestEnv;

fn processor() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_processor"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

#[test]
fn help_lists_every_variable_of_the_contract_with_its_default() {
    let out = processor()
        .arg("--help")
        .output()
        .expect("run processor --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "REDIS_URL",
        "DATABASE_URL",
        "INSTANCE_ID",
        "MIGRATE_ON_START",
        "LOG_FORMAT",
        "LIVE_WS_ADDR",
        "METRICS_ADDR",
        "REDIS_TELEMETRY_STREAM",
        "DEAD_LETTER_STREAM",
        "DURABLE_GROUP",
        "DURABLE_CLAIM_IDLE_MS",
        "DURABLE_MAX_DELIVERIES",
        "FAULTY_MIN_SATELLITES",
        "FAULTY_MAX_FUTURE_MS",
        "FAULTY_MAX_SPEED_KMH",
        "LIVE_AUTH_JWT_SECRET",
        "LIVE_AUTH_JWT_PUBLIC_KEY_FILE",
        "LIVE_ALLOW_ANONYMOUS",
        "LIVE_WS_CONFLATE_THRESHOLD_BYTES",
        "LIVE_WS_BACKPRESSURE_THRESHOLD_BYTES",
        "LIVE_WS_MAX_MESSAGE_BYTES",
        "LIVE_WS_MAX_BAD_MESSAGES",
        "LIVE_WS_MAX_SUBSCRIPTIONS",
        "LIVE_WS_PING_INTERVAL_MS",
        "LIVE_BROADCAST_GROUP_PREFIX",
        "LIVE_BROADCAST_GROUP_TTL_MS",
        "LIVE_DEVICE_EVENT_REFRESH_MS",
        "LIVE_MAP_TILE_URL",
        "LIVE_MAP_TILE_ATTRIBUTION",
    ] {
        assert!(help.contains(&format!("[env: {var}")), "--help lists {var}");
    }
    assert!(help.contains("[default: telemetry:teltonika]"));
}

/// Every variable of the `--help` of `processor <args>` is in the tables of `doc` (a file
/// under docs/) with the same default, and every variable of those tables is in `--help`.
fn variable_tables_match_help(args: &[&str], doc: &str) {
    let out = processor()
        .args(args)
        .arg("--help")
        .output()
        .expect("run processor --help");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let path = format!("{}/../docs/{doc}", env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(&path).expect("the doc is readable");
    let documented: Vec<(String, String)> = doc
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let var = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            var.chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
                .then(|| {
                    (
                        var.to_owned(),
                        cells.get(2).unwrap_or(&"").trim_matches('`').to_owned(),
                    )
                })
        })
        .collect();
    // Every option block in --help: "[env: NAME=...]" then maybe "[default: VALUE]", or a
    // default that is not a value (none, the host name) at the end of its description.
    let mut in_help = Vec::new();
    let lines: Vec<&str> = help.lines().map(str::trim).collect();
    for (i, line) in lines.iter().enumerate() {
        if let Some(rest) = line.strip_prefix("[env: ") {
            let name = rest.split(['=', ']']).next().unwrap_or_default().to_owned();
            let described = lines[..i]
                .iter()
                .rev()
                .find(|l| !l.is_empty())
                .and_then(|l| l.strip_suffix(']'))
                .and_then(|l| l.rsplit_once("[default: "))
                .map(|(_, d)| d.to_owned());
            let default = lines
                .get(i + 1)
                .and_then(|l| l.strip_prefix("[default: "))
                .map(|d| d.trim_end_matches(']').to_owned())
                .or(described);
            in_help.push((name, default));
        }
    }
    for (name, default) in &in_help {
        let Some((_, doc_default)) = documented.iter().find(|(v, _)| v == name) else {
            panic!("{name} is in --help but not in {path}");
        };
        if let Some(default) = default {
            assert_eq!(doc_default, default, "default of {name} in {path}");
        }
    }
    for (var, _) in &documented {
        assert!(
            in_help.iter().any(|(n, _)| n == var),
            "{var} is in {path} but not in --help"
        );
    }
}

#[test]
fn the_operations_table_matches_help() {
    variable_tables_match_help(&[], "operations.md");
}

#[test]
fn the_gateway_table_matches_its_help() {
    variable_tables_match_help(&["gateway"], "gateway.md");
}

#[test]
fn gateway_help_lists_every_variable_it_reads_with_its_default() {
    let out = processor()
        .args(["gateway", "--help"])
        .output()
        .expect("run processor gateway --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "REDIS_URL",
        "REDIS_TELEMETRY_STREAM",
        "METRICS_ADDR",
        "LOG_FORMAT",
        "DATABASE_URL",
        "LIVE_DEVICE_EVENT_REFRESH_MS",
        "GATEWAY_TCP_ADDR",
        "GATEWAY_UDP_ADDR",
        "GATEWAY_ACCEPT_UNKNOWN_DEVICES",
        "GATEWAY_MAX_PACKET_BYTES",
        "GATEWAY_MAX_BAD_PACKETS",
        "GATEWAY_IDLE_TIMEOUT_MS",
        "GATEWAY_MAX_CONNECTIONS",
        "GATEWAY_ACK_TIMEOUT_MS",
    ] {
        assert!(
            help.contains(&format!("[env: {var}=")),
            "{var} missing from gateway --help"
        );
    }
    assert!(
        !help.contains("LIVE_WS_ADDR"),
        "the gateway reads none of the service's own"
    );
    for default in ["0.0.0.0:5027", "4096", "600000", "10000"] {
        assert!(help.contains(&format!("[default: {default}]")), "{default}");
    }
}

#[test]
fn a_bad_gateway_value_stops_it_naming_the_variable() {
    for (var, value) in [
        ("GATEWAY_MAX_BAD_PACKETS", "0"),
        ("GATEWAY_MAX_CONNECTIONS", "0"),
        ("GATEWAY_IDLE_TIMEOUT_MS", "0"),
        ("GATEWAY_ACK_TIMEOUT_MS", "0"),
        ("GATEWAY_MAX_PACKET_BYTES", "0"),
        ("GATEWAY_TCP_ADDR", "localhost"),
        ("GATEWAY_UDP_ADDR", "nowhere"),
        ("GATEWAY_ACCEPT_UNKNOWN_DEVICES", "maybe"),
        ("REDIS_URL", "http://example"),
    ] {
        // A bad variable of the service's alone must not matter to the gateway.
        let out = processor()
            .arg("gateway")
            .env("DURABLE_BATCH_SIZE", "0")
            .env(var, value)
            .output()
            .expect("run processor gateway");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}={value} must stop the gateway");
        assert!(stderr.contains(var), "the message names {var}: {stderr}");
        assert!(!stderr.contains("DURABLE_BATCH_SIZE"), "{stderr}");
    }
}

#[test]
fn a_bad_value_stops_start_up_naming_the_variable() {
    for (var, value) in [
        ("FAULTY_MIN_SATELLITES", "many"),
        ("MIGRATE_ON_START", "yes"),
        ("LOG_FORMAT", "xml"),
        ("DURABLE_BATCH_SIZE", "0"),
        ("METRICS_ADDR", "localhost"),
        ("REDIS_URL", "http://example"),
        ("DATABASE_URL", "postgres://host:notaport/db"),
        ("LIVE_MAP_TILE_URL", "ftp://tiles.example/{z}/{x}/{y}.png"),
        ("LIVE_MAP_TILE_URL", "https://tiles.example/{z}/{x}.png"),
        (
            "LIVE_MAP_TILE_URL",
            "tile.openstreetmap.org/{z}/{x}/{y}.png",
        ),
    ] {
        let out = processor().env(var, value).output().expect("run processor");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}={value} must stop start-up");
        assert!(
            stderr.contains(var),
            "the message for {var}={value} names it: {stderr}"
        );
    }
}

#[test]
fn thresholds_that_contradict_each_other_are_refused() {
    let out = processor()
        .env("LIVE_WS_CONFLATE_THRESHOLD_BYTES", "2000000")
        .env("LIVE_WS_BACKPRESSURE_THRESHOLD_BYTES", "1000000")
        .output()
        .expect("run processor");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LIVE_WS_CONFLATE_THRESHOLD_BYTES"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_twice_is_a_no_op() {
    // TestEnv::new has already migrated the schema once.
    let env = TestEnv::new("migrate_twice").await;
    let second = env.migrate().await;
    assert!(
        second.contains("no pending migrations"),
        "second run: {second}"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM schema_migrations").await,
        processor_shell::migrate::MIGRATIONS.len() as i64
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_take_turns() {
    let env = TestEnv::new("migrate_concurrent").await;
    env.count("SELECT count(*) FROM positions").await;
    let pg = env.pg().await;
    pg.batch_execute("DROP TABLE positions, entry_devices, entries, events, schema_migrations")
        .await
        .expect("reset the schema");
    let runs = (0..4).map(|_| env.migrate());
    let outputs = futures_util::future::join_all(runs).await;
    let applied = outputs
        .iter()
        .filter(|o| o.contains("migration applied"))
        .count();
    assert_eq!(
        applied, 1,
        "exactly one of the concurrent runs applies the migrations"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM schema_migrations").await,
        processor_shell::migrate::MIGRATIONS.len() as i64
    );
    env.cleanup().await;
}

#[test]
fn limits_that_must_be_positive_refuse_zero() {
    for var in [
        "LIVE_WS_MAX_SUBSCRIPTIONS",
        "LIVE_WS_MAX_BAD_MESSAGES",
        "LIVE_WS_MAX_CONNECTIONS",
        "LIVE_WS_MAX_MESSAGES_PER_S",
        "LIVE_WS_CONFLATE_THRESHOLD_BYTES",
        "LIVE_HTTP_HEADER_TIMEOUT_MS",
        "LIVE_HTTP_IDLE_TIMEOUT_MS",
        "LIVE_WS_WRITE_TIMEOUT_MS",
        "LIVE_HUB_SHARDS",
    ] {
        let out = processor().env(var, "0").output().expect("run processor");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{var}=0 must stop start-up: {stderr}"
        );
        assert!(stderr.contains(var), "the message names {var}: {stderr}");
    }
}

#[test]
fn a_short_hs256_secret_stops_start_up_without_echoing_it() {
    let secret = "too-short-a-secret-31-bytes-xyz";
    assert_eq!(secret.len(), 31);
    let out = processor()
        .env("LIVE_AUTH_JWT_SECRET", secret)
        // Unreachable on purpose: the secret is checked before anything is connected.
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("LIVE_WS_ADDR", "127.0.0.1:0")
        .output()
        .expect("run processor");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a 31-byte secret must stop start-up");
    assert!(stderr.contains("LIVE_AUTH_JWT_SECRET"), "{stderr}");
    assert!(stderr.contains("32 bytes"), "{stderr}");
    assert!(
        !stderr.contains(secret),
        "the secret is never echoed: {stderr}"
    );
}

#[test]
fn url_errors_never_echo_a_password() {
    for (var, value, password) in [
        (
            "DATABASE_URL",
            "postgres://app:hunter2-pw@db:notaport/x",
            "hunter2-pw",
        ),
        (
            "DATABASE_URL",
            "host=db port=notaport password=hunter2-kv",
            "hunter2-kv",
        ),
        (
            "REDIS_URL",
            "http://user:redis-pw-9@example:6379",
            "redis-pw-9",
        ),
    ] {
        let out = processor().env(var, value).output().expect("run processor");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {stderr}");
        assert!(stderr.contains(var), "the message names {var}: {stderr}");
        assert!(
            !stderr.contains(password),
            "the password of {var} is never echoed: {stderr}"
        );
    }
}

#[test]
fn a_minimum_fix_time_that_is_not_rfc_3339_stops_start_up() {
    let out = processor()
        .env("FAULTY_MIN_TIMESTAMP", "2010-01-01")
        .output()
        .expect("run processor");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FAULTY_MIN_TIMESTAMP"));
}

#[test]
fn a_start_up_error_carries_the_servers_message_and_no_password() {
    let database = format!("no_such_database_{}", std::process::id());
    let base = support::base_database_url();
    let Some((_, rest)) = base.split_once("://") else {
        panic!("DATABASE_URL is a URL: {base}");
    };
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = host.split('/').next().unwrap_or(host);
    // Trust authentication ignores the password, which must not be echoed all the same.
    let url = format!("postgres://postgres:pw-never-shown@{host}/{database}");
    let out = processor()
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .expect("run processor migrate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("database \"{database}\" does not exist")),
        "the server's own message: {stderr}"
    );
    assert!(!stderr.contains("pw-never-shown"), "{stderr}");
}

#[test]
fn admin_needs_only_the_database() {
    let database = format!("no_such_database_{}", std::process::id());
    let out = processor()
        .args(["admin", "event", "list"])
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:1/{database}"),
        )
        .env("LIVE_WS_MAX_SUBSCRIPTIONS", "0")
        .output()
        .expect("run processor admin");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect to Postgres"), "{stderr}");
    assert!(
        !stderr.contains("LIVE_WS_MAX_SUBSCRIPTIONS"),
        "the service's settings are not read: {stderr}"
    );
}

#[test]
fn the_jwt_secret_has_no_flag() {
    let out = processor()
        .args(["--jwt-secret", "0123456789abcdef0123456789abcdef"])
        .output()
        .expect("run processor");
    assert_eq!(out.status.code(), Some(2));
    let help = processor()
        .arg("--help")
        .output()
        .expect("run processor --help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(!help.contains("--jwt-secret"), "{help}");
    assert!(help.contains("the flag beside it"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_written_to_a_pipe_carry_no_colour_codes() {
    // `migrate` runs with stderr on a pipe, as a log file or a collector would receive it:
    // colour codes there are noise that breaks grep and parsers.
    let env = TestEnv::new("logs_no_colour").await;
    let logs = env.migrate().await;
    assert!(logs.contains("no pending migrations"), "{logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "escape codes in logs written to a pipe: {logs:?}"
    );
    env.cleanup().await;
}

#[test]
fn fleet_seed_takes_the_jwt_secret_from_the_environment_only() {
    let fleet = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fleet"));
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        c
    };
    // Refused before anything is done (no database is reached): clap's usage error.
    let out = fleet()
        .args(["seed", "--jwt-secret", "0123456789abcdef0123456789abcdef"])
        .output()
        .expect("run fleet seed");
    assert_eq!(out.status.code(), Some(2));
    let help = fleet()
        .args(["seed", "--help"])
        .output()
        .expect("run fleet seed --help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(!help.contains("--jwt-secret"), "{help}");
    assert!(help.contains("LIVE_AUTH_JWT_SECRET"), "{help}");
}
