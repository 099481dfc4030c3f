//! `processor admin` against a real Postgres, and what it sets up seen through the live
//! service: the device map and `GET /events/<uuid>`.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use uuid::Uuid;

use support::live::{connect, token, unique_uuid, SECRET};
use support::{http_get, wait_until, Processor, TestEnv};

/// What one run of the binary printed.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The stdout of a run that must have succeeded.
    fn out(&self) -> &str {
        assert!(self.ok, "the command failed: {}", self.stderr);
        self.stdout.trim()
    }

    /// The stderr of a run that must have failed.
    fn err(&self) -> &str {
        assert!(!self.ok, "the command succeeded: {}", self.stdout);
        &self.stderr
    }
}

fn admin(env: &TestEnv, args: &[&str]) -> Run {
    admin_with_input(env, args, None)
}

fn admin_with_input(env: &TestEnv, args: &[&str], input: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_processor"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", env.database_url())
        // A service setting that does not parse must not stop an admin command.
        .env("FAULTY_MIN_SATELLITES", "many")
        .arg("admin")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run processor admin");
    if let Some(mut stdin) = child.stdin.take() {
        if let Some(input) = input {
            stdin.write_all(input.as_bytes()).expect("write stdin");
        }
    }
    let out = child.wait_with_output().expect("wait for processor admin");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn json_out(run: &Run) -> Value {
    serde_json::from_str(run.out()).expect("the command prints JSON")
}

fn entries_of(env: &TestEnv, event: &str) -> Vec<Value> {
    let listed = json_out(&admin(env, &["entry", "list", "--event", event, "--json"]));
    listed["entries"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_created_listed_and_updated() {
    let env = TestEnv::new("admin_events").await;
    let id = admin(
        &env,
        &[
            "event",
            "create",
            "--name",
            "City Run",
            "--visibility",
            "private",
            "--starts-at",
            "2026-05-01T09:00:00+03:00",
            "--ends-at",
            "2026-05-01T15:00:00Z",
        ],
    );
    let id: Uuid = id.out().parse().expect("create prints the new id");

    let fixed = unique_uuid().to_string();
    let create_fixed = ["event", "create", "--name", "Trail", "--id", &fixed];
    assert_eq!(admin(&env, &create_fixed).out(), fixed);
    assert_eq!(
        admin(&env, &create_fixed).out(),
        fixed,
        "a re-run changes nothing"
    );
    let other = admin(
        &env,
        &["event", "create", "--name", "Other", "--id", &fixed],
    );
    assert!(
        other.err().contains("already exists with other values"),
        "{}",
        other.stderr
    );

    let list = json_out(&admin(&env, &["event", "list", "--json"]));
    assert_eq!(
        list,
        json!([
            {"id": id.to_string(), "name": "City Run", "visibility": "private",
             "starts_at": "2026-05-01T06:00:00Z", "ends_at": "2026-05-01T15:00:00Z", "entries": 0},
            {"id": fixed, "name": "Trail", "visibility": "public",
             "starts_at": null, "ends_at": null, "entries": 0},
        ])
    );
    let table = admin(&env, &["event", "list"]);
    assert!(
        table.out().starts_with("id\tvisibility"),
        "{}",
        table.stdout
    );

    let id = id.to_string();
    let updated = admin(
        &env,
        &[
            "event",
            "update",
            &id,
            "--visibility",
            "public",
            "--name",
            "City Run 2026",
            "--clear-ends-at",
        ],
    );
    assert_eq!(updated.out(), id);
    let list = json_out(&admin(&env, &["event", "list", "--json"]));
    assert_eq!(list[0]["name"], "City Run 2026");
    assert_eq!(list[0]["visibility"], "public");
    assert_eq!(list[0]["ends_at"], Value::Null);
    assert_eq!(list[0]["starts_at"], "2026-05-01T06:00:00Z");

    // The window is checked as a whole, against what is kept.
    let inverted = admin(
        &env,
        &["event", "update", &id, "--ends-at", "2026-05-01T05:00:00Z"],
    );
    assert!(
        inverted.err().contains(
            "ends_at (2026-05-01T05:00:00Z) must be after starts_at (2026-05-01T06:00:00Z)"
        ),
        "{}",
        inverted.stderr
    );
    let bad = admin(
        &env,
        &["event", "create", "--name", "x", "--visibility", "secret"],
    );
    assert!(
        bad.err()
            .contains("visibility must be `public` or `private`"),
        "{}",
        bad.stderr
    );
    let bad = admin(&env, &["event", "create", "--name", "  "]);
    assert!(
        bad.err().contains("name must not be empty"),
        "{}",
        bad.stderr
    );
    let missing = unique_uuid().to_string();
    let nothing = admin(&env, &["event", "update", &missing, "--name", "x"]);
    assert!(
        nothing.err().contains(&format!("no event {missing}")),
        "{}",
        nothing.stderr
    );
    let nothing = admin(&env, &["event", "update", &id]);
    assert!(
        nothing.err().contains("nothing to change"),
        "{}",
        nothing.stderr
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_is_in_one_entry_of_an_event_at_a_time() {
    let env = TestEnv::new("admin_devices").await;
    let event = admin(&env, &["event", "create", "--name", "Relay"])
        .out()
        .to_owned();
    let create = [
        "entry", "create", "--event", &event, "--name", "Ana", "--bib", "7",
    ];
    let ana = admin(&env, &create).out().to_owned();
    assert_eq!(
        admin(&env, &create).out(),
        ana,
        "same bib, same name: unchanged"
    );
    let renamed = admin(
        &env,
        &[
            "entry", "create", "--event", &event, "--name", "Anna", "--bib", "7",
        ],
    );
    assert!(
        renamed.err().contains("bib 7 is already entry"),
        "{}",
        renamed.stderr
    );
    let ben = admin(
        &env,
        &[
            "entry", "create", "--event", &event, "--name", "Ben", "--bib", "12",
        ],
    )
    .out()
    .to_owned();

    let device = "356307042441013";
    let assigned = admin(&env, &["device", "assign", "--entry", &ana, device]);
    assert_eq!(assigned.out(), format!("assigned {device} to entry {ana}"));
    let again = admin(
        &env,
        &["device", "assign", "--event", &event, "--bib", "7", device],
    );
    assert_eq!(
        again.out(),
        format!("unchanged: {device} is in entry {ana}")
    );
    let refused = admin(&env, &["device", "assign", "--entry", &ben, device]);
    assert!(
        refused.err().contains("is already in entry"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("device move"), "{}", refused.stderr);

    let moved = admin(
        &env,
        &["device", "move", "--event", &event, "--bib", "12", device],
    );
    assert_eq!(
        moved.out(),
        format!("moved {device} from entry {ana} to entry {ben}")
    );
    let entries = entries_of(&env, &event);
    assert_eq!(
        entries,
        json!([
            {"id": ana, "name": "Ana", "bib": "7", "devices": []},
            {"id": ben, "name": "Ben", "bib": "12", "devices": [device]},
        ])
        .as_array()
        .cloned()
        .unwrap_or_default()
    );

    // Another event may have the same device at the same time.
    let other = admin(&env, &["event", "create", "--name", "Other"])
        .out()
        .to_owned();
    let cy = admin(&env, &["entry", "create", "--event", &other, "--bib", "1"])
        .out()
        .to_owned();
    admin(&env, &["device", "assign", "--entry", &cy, device]).out();

    let gone = admin(&env, &["device", "unassign", "--event", &event, device]);
    assert_eq!(gone.out(), format!("unassigned {device} from entry {ben}"));
    let again = admin(&env, &["device", "unassign", "--event", &event, device]);
    assert_eq!(
        again.out(),
        format!("unchanged: {device} is in no entry of the event")
    );
    assert_eq!(entries_of(&env, &other)[0]["devices"], json!([device]));

    let updated = admin(
        &env,
        &[
            "entry",
            "update",
            "--entry",
            &ben,
            "--new-bib",
            "13",
            "--clear-name",
        ],
    );
    assert_eq!(updated.out(), ben);
    let taken = admin(
        &env,
        &[
            "entry",
            "update",
            "--event",
            &event,
            "--bib",
            "13",
            "--new-bib",
            "7",
        ],
    );
    assert!(
        taken.err().contains("bib 7 is already entry"),
        "{}",
        taken.stderr
    );
    let entries = entries_of(&env, &event);
    assert_eq!(entries[1]["bib"], "13");
    assert_eq!(entries[1]["name"], Value::Null);
    let bad = admin(&env, &["device", "assign", "--entry", &ana, ""]);
    assert!(
        bad.err().contains("device_id must not be empty"),
        "{}",
        bad.stderr
    );
    let no_bib = admin(
        &env,
        &["device", "assign", "--event", &event, "--bib", "99", device],
    );
    assert!(
        no_bib.err().contains("has no entry with bib 99"),
        "{}",
        no_bib.stderr
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_list_imports_once_and_bad_lines_are_named() {
    let env = TestEnv::new("admin_import").await;
    let event = admin(&env, &["event", "create", "--name", "Marathon"])
        .out()
        .to_owned();
    let csv = "bib,name,device_id\r\n\
               1,\"Kairys, Jonas\",356307040000001\r\n\
               2,Ona,356307040000002\r\n\
               1,\"Kairys, Jonas\",356307040000011\r\n\
               3,Petras,\r\n";
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let file = dir.join(format!("{}-start.csv", env.name));
    std::fs::write(&file, csv).expect("write the CSV");
    let path = file.to_string_lossy().into_owned();
    let import = ["import", "--event", &event, &path];

    let first = json_out(&admin(&env, &import));
    assert_eq!(
        first,
        json!({"entries_created": 3, "entries_renamed": 0, "entries_unchanged": 0,
               "devices_assigned": 3, "devices_moved": 0, "devices_unchanged": 0})
    );
    let before = entries_of(&env, &event);
    let second = json_out(&admin(&env, &import));
    assert_eq!(
        second,
        json!({"entries_created": 0, "entries_renamed": 0, "entries_unchanged": 3,
               "devices_assigned": 0, "devices_moved": 0, "devices_unchanged": 3})
    );
    assert_eq!(entries_of(&env, &event), before, "a re-run changes nothing");
    assert_eq!(before[0]["name"], "Kairys, Jonas");
    assert_eq!(
        before[0]["devices"],
        json!(["356307040000001", "356307040000011"])
    );

    // From standard input: a device changes hands, a name is corrected.
    let update = "bib,name,device_id\n2,Ona K.,356307040000002\n3,Petras,356307040000011\n";
    let third = json_out(&admin_with_input(
        &env,
        &["import", "--event", &event, "-"],
        Some(update),
    ));
    assert_eq!(third["entries_renamed"], 1);
    assert_eq!(third["devices_moved"], 1);
    let after = entries_of(&env, &event);
    assert_eq!(after[0]["devices"], json!(["356307040000001"]));
    assert_eq!(after[2]["devices"], json!(["356307040000011"]));

    let bad =
        "bib,name,device_id\n4,Rasa,356307040000004\n,NoBib,1\n5,Two,356307040000001\n6,\"Open\n";
    let refused = admin_with_input(&env, &["import", "--event", &event, "-"], Some(bad));
    let stderr = refused.err();
    assert!(stderr.contains("nothing was imported"), "{stderr}");
    assert!(
        stderr.contains("line 3, column bib: bib must not be empty"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("line 4"),
        "device 1 moves to bib 5: not an error: {stderr}"
    );
    let refused = admin_with_input(
        &env,
        &["import", "--event", &event, "-"],
        Some("bib,nmae\n1,x\n"),
    );
    assert!(
        refused.err().contains("line 1: unknown column `nmae`"),
        "{}",
        refused.stderr
    );
    let refused = admin_with_input(
        &env,
        &["import", "--event", &event, "-"],
        Some("bib,device_id\n8,1\n9,1\n"),
    );
    assert!(
        refused
            .err()
            .contains("line 3, column device_id: device 1 is also on line 2 (bib 8)"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        entries_of(&env, &event).len(),
        3,
        "a refused list adds nothing"
    );
    let missing = admin(
        &env,
        &["import", "--event", &event, "/nonexistent/start.csv"],
    );
    assert!(
        missing
            .err()
            .contains("cannot read the start list /nonexistent/start.csv"),
        "{}",
        missing.stderr
    );
    let _ = std::fs::remove_file(&file);
    env.cleanup().await;
}

fn live_vars() -> Vec<(&'static str, String)> {
    vec![
        ("LIVE_AUTH_JWT_SECRET", SECRET.to_owned()),
        ("LIVE_DEVICE_EVENT_REFRESH_MS", "100".to_owned()),
    ]
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn fix(device: &str, ts: i64) -> String {
    json!({"device_id": device, "timestamp": ts, "latitude": 54.68, "longitude": 25.28,
           "speed": 12.0, "angle": 90.0, "satellites": 9})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_assigned_by_admin_reaches_the_event_subscribers() {
    let env = TestEnv::new("admin_live").await;
    let event = admin(&env, &["event", "create", "--name", "Live"])
        .out()
        .to_owned();
    let entry = admin(&env, &["entry", "create", "--event", &event, "--bib", "1"])
        .out()
        .to_owned();
    let p = Processor::start(&env, "a", &live_vars());
    wait_until("ready", || async { p.ready().await == Some(true) }).await;
    let mut client = connect(p.ws_addr, None)
        .await
        .expect("anonymous clients are allowed");
    let event_id: Uuid = event.parse().expect("a UUID");
    assert!(client.subscribe(event_id).await.is_empty());

    let device = "356307049999001";
    admin(&env, &["device", "assign", "--entry", &entry, device]).out();
    // Published until the map refresh has picked the assignment up; the first position
    // that reaches the subscriber is one of these.
    let t0 = now_ms() - 60_000;
    let mut ts = t0;
    let received = loop {
        ts += 10;
        env.publish(&[fix(device, ts)]).await;
        let wait = tokio::time::timeout(support::live::POLL * 4, client.next()).await;
        if let Ok(message) = wait {
            break message;
        }
        assert!(
            ts - t0 < 1_000_000,
            "the assigned device never reached the subscriber"
        );
    };
    assert_eq!(received["type"], "position", "{received}");
    assert_eq!(received["deviceId"], device);
    drop(p);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_details_are_served_as_the_topic_is_authorized() {
    let env = TestEnv::new("admin_details").await;
    let public = admin(
        &env,
        &[
            "event",
            "create",
            "--name",
            "Open Race",
            "--starts-at",
            "2026-05-01T09:00:00Z",
        ],
    )
    .out()
    .to_owned();
    let private = admin(
        &env,
        &[
            "event",
            "create",
            "--name",
            "Closed",
            "--visibility",
            "private",
        ],
    )
    .out()
    .to_owned();
    let list = "bib,name,device_id\n10,Ben,356307040000010\n2,Ana,356307040000002\n";
    admin_with_input(&env, &["import", "--event", &public, "-"], Some(list)).out();
    admin_with_input(
        &env,
        &["import", "--event", &private, "-"],
        Some("bib\n1\n"),
    )
    .out();
    let p = Processor::start(&env, "a", &live_vars());
    wait_until("ready", || async { p.ready().await == Some(true) }).await;

    let (status, head, body) = http_get(p.ws_addr, &format!("/events/{public}"))
        .await
        .expect("GET /events/<uuid>");
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    let body: Value = serde_json::from_str(&body).expect("JSON");
    let entries = body["entries"].as_array().cloned().unwrap_or_default();
    assert_eq!(body["id"], public);
    assert_eq!(body["name"], "Open Race");
    assert_eq!(body["visibility"], "public");
    assert_eq!(body["starts_at"], "2026-05-01T09:00:00Z");
    assert_eq!(body["ends_at"], Value::Null);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["bib"], "2", "bibs in number order: {entries:?}");
    assert_eq!(entries[0]["name"], "Ana");
    assert_eq!(entries[0]["devices"], json!(["356307040000002"]));
    assert!(entries[0]["id"]
        .as_str()
        .is_some_and(|id| id.parse::<Uuid>().is_ok()));
    assert_eq!(entries[1]["bib"], "10");
    documented_as_in_openapi(&body);

    let (status, head, hidden) = http_get(p.ws_addr, &format!("/events/{private}"))
        .await
        .expect("GET");
    assert_eq!(status, 404);
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    let nonexistent = unique_uuid();
    let (status, _, missing) = http_get(p.ws_addr, &format!("/events/{nonexistent}"))
        .await
        .expect("GET");
    assert_eq!(status, 404);
    assert_eq!(hidden, missing, "private and nonexistent look the same");
    let error: Value = serde_json::from_str(&missing).expect("a JSON error");
    assert_eq!(error["error"], "not_found");

    let granted = token(json!({"events": [private]}));
    let (status, _, body) = http_get(
        p.ws_addr,
        &format!("/events/{private}?access_token={granted}"),
    )
    .await
    .expect("GET");
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["visibility"], "private");
    assert_eq!(body["entries"][0]["bib"], "1");
    let other = token(json!({"events": [public]}));
    let (status, _, body) = http_get(
        p.ws_addr,
        &format!("/events/{private}?access_token={other}"),
    )
    .await
    .expect("GET");
    assert_eq!(
        (status, body),
        (404, missing.clone()),
        "a token for another event"
    );
    let (status, head, _) = http_get(
        p.ws_addr,
        &format!("/events/{private}?access_token=garbage"),
    )
    .await
    .expect("GET");
    assert_eq!(status, 401);
    assert!(head.contains("www-authenticate: bearer"), "{head}");

    let (status, _, events) = http_get(p.ws_addr, "/events").await.expect("GET /events");
    assert_eq!(status, 200);
    let events: Value = serde_json::from_str(&events).expect("JSON");
    assert_eq!(
        events,
        json!([{"id": public, "name": "Open Race", "starts_at": "2026-05-01T09:00:00Z", "ends_at": null}])
    );
    drop(p);
    env.cleanup().await;
}

/// The answer has exactly the fields docs/openapi.json requires of an event and its entries.
fn documented_as_in_openapi(body: &Value) {
    let doc: Value = serde_json::from_str(include_str!("../docs/openapi.json")).expect("JSON");
    let schemas = &doc["components"]["schemas"];
    let keys = |v: &Value| -> Vec<String> {
        let mut keys: Vec<String> = v
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    };
    let required = |name: &str| -> Vec<String> {
        let mut list: Vec<String> =
            serde_json::from_value(schemas[name]["required"].clone()).expect("a list");
        list.sort();
        list
    };
    assert_eq!(keys(body), required("EventDetails"));
    assert_eq!(keys(&body["entries"][0]), required("Entry"));
    assert!(doc["paths"]["/events/{id}"]["get"].is_object());
}
