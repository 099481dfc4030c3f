//! The live map page in a real browser: headless Chromium, driven through chromedriver,
//! loads the page from the real `processor` while the real `fleet` publishes, and the test
//! reads what the page itself holds (`window.processorMap.snapshot()`) and shows.
//!
//! Needs Debian's `chromium` and `chromium-driver`; `scripts/test.sh` installs them
//! (through `scripts/browser.sh`) when missing.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use support::live::SECRET;
use support::{free_addr, wait_until, Processor, TestEnv};

const DEVICES: usize = 12;

/// A child process killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends a signal (`-STOP`, `-CONT`) to a running helper process.
fn signal(running: &Running, which: &str) {
    let status = Command::new("kill")
        .args([which, &running.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {which} failed");
}

/// What `fleet seed` printed: `KEY=value` lines.
fn seed(env: &TestEnv) -> BTreeMap<String, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args(["--devices", &DEVICES.to_string(), "seed"])
        .env("DATABASE_URL", env.database_url())
        .env("LIVE_AUTH_JWT_SECRET", SECRET)
        .output()
        .expect("run fleet seed");
    assert!(
        out.status.success(),
        "fleet seed failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn fleet_stream(env: &TestEnv) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args(["--devices", &DEVICES.to_string(), "stream", "--rate", "24"])
        .env("REDIS_URL", support::redis_url())
        .env("REDIS_TELEMETRY_STREAM", &env.stream)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start fleet stream");
    Running(child)
}

/// chromedriver on a free port, once it says it is ready (it speaks no HTTP/1.0, so it is not
/// polled with the harness's GET).
async fn chromedriver() -> (Running, SocketAddr) {
    use std::io::BufRead;
    let addr = free_addr();
    let mut child = Command::new("chromedriver")
        .arg(format!("--port={}", addr.port()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is installed (scripts/browser.sh installs chromium-driver)");
    let stdout = child.stdout.take().expect("chromedriver's stdout is piped");
    let driver = Running(child);
    let started = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        let ready = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|line| line.contains("started successfully"));
        // Keep draining so that chromedriver never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        ready
    });
    let ready = tokio::time::timeout(support::PATIENCE, started)
        .await
        .expect("chromedriver starts in time")
        .expect("read chromedriver's output");
    assert!(ready, "chromedriver exited before it was ready");
    (driver, addr)
}

async fn browser(driver: SocketAddr, profile: &std::path::Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({ "args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.display()),
        ]}),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://{driver}"))
        .await
        .expect("start headless Chromium through chromedriver")
}

/// The page's own view of its state.
async fn page_state(browser: &Client) -> Value {
    browser
        .execute(
            "return window.processorMap ? window.processorMap.snapshot() : null;",
            vec![],
        )
        .await
        .expect("run a script in the page")
}

async fn text_of(browser: &Client, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .expect("the element is on the page")
        .text()
        .await
        .expect("read the element's text")
}

/// Waits until the page's state satisfies `check`; returns that state.
async fn wait_for_state(browser: &Client, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    loop {
        let state = page_state(browser).await;
        if check(&state) {
            return state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting until {what}; the page holds {state}"
        );
        tokio::time::sleep(support::live::POLL).await;
    }
}

fn device_ids(state: &Value) -> Vec<String> {
    state["devices"]
        .as_object()
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_map_shows_moving_devices_and_a_private_event_needs_its_token() {
    let env = TestEnv::new("browser").await;
    let seeded = seed(&env);
    let (public, private, token, orphan) = (
        seeded["PUBLIC_EVENT"].clone(),
        seeded["PRIVATE_EVENT"].clone(),
        seeded["DEMO_TOKEN"].clone(),
        seeded["ORPHAN_DEVICE"].clone(),
    );
    let processor = Processor::start(
        &env,
        "browser",
        &[
            ("LIVE_AUTH_JWT_SECRET", SECRET.to_owned()),
            ("LIVE_DEVICE_EVENT_REFRESH_MS", "200".to_owned()),
        ],
    );
    wait_until("ready", || async { processor.ready().await == Some(true) }).await;
    let fleet = fleet_stream(&env);
    let (_driver, driver_addr) = chromedriver().await;
    let profile = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{}-chromium", env.name));
    let browser = browser(driver_addr, &profile).await;
    let page = format!("http://{}/", processor.ws_addr);

    // The public event: devices appear, then move.
    browser
        .goto(&format!("{page}?event={public}"))
        .await
        .expect("load the map page");
    let first = wait_for_state(&browser, "the public event's devices show", |s| {
        s["subscribed"] == json!(true) && s["deviceCount"].as_u64().unwrap_or(0) >= 3
    })
    .await;
    assert_eq!(first["topic"], json!(format!("event:{public}")));
    assert_eq!(
        first["snapshots"],
        json!(1),
        "one snapshot per subscription"
    );
    let moved = wait_for_state(&browser, "a device moves", |s| {
        device_ids(&first).iter().any(|id| {
            let (a, b) = (&first["devices"][id], &s["devices"][id]);
            b["ts"].as_i64() > a["ts"].as_i64() && (b["lat"] != a["lat"] || b["lon"] != a["lon"])
        })
    })
    .await;
    assert!(moved["positions"].as_u64().unwrap_or(0) >= 1);
    let shown = device_ids(&moved);
    assert!(!shown.contains(&orphan), "the orphan device is in no event");
    let options = browser
        .execute(
            "return [...document.querySelectorAll('#event-select option')].map(o => o.value);",
            vec![],
        )
        .await
        .expect("list the event picker's options");
    let options: Vec<String> = serde_json::from_value(options).unwrap_or_default();
    assert!(
        options.contains(&public),
        "the picker offers {public}: {options:?}"
    );
    assert!(
        !options.contains(&private),
        "the picker hides private events: {options:?}"
    );
    wait_until("the page shows the device count it holds", || async {
        let shown: Option<u64> = text_of(&browser, "#count")
            .await
            .split(|c: char| !c.is_ascii_digit())
            .find(|n| !n.is_empty())
            .and_then(|n| n.parse().ok());
        shown.is_some() && shown == page_state(&browser).await["deviceCount"].as_u64()
    })
    .await;

    participants_are_labelled_listed_and_followed(&browser).await;
    nothing_is_fetched_from_elsewhere_without_a_tile_layer(&browser, processor.ws_addr).await;
    tiles_come_from_the_configured_template_under_the_positions(&browser, &env, &public).await;

    trails_then_a_resume_without_a_hole(&env, &browser, &page, &public).await;
    a_replay_plays_what_was_stored_then_back_to_live(&env, &browser, &fleet).await;

    // The private event without a token: a "needs a token" state, not an error; nothing drawn.
    browser
        .goto(&format!("{page}?event={private}"))
        .await
        .expect("load the map page");
    let refused = wait_for_state(&browser, "the private event asks for a token", |s| {
        s["access"] == json!("needs_token") && s["lastError"]["code"] == json!("forbidden")
    })
    .await;
    assert_eq!(refused["subscribed"], json!(false));
    assert_eq!(refused["deviceCount"], json!(0));
    assert!(text_of(&browser, "#notice").await.contains("needs a token"));
    assert_eq!(text_of(&browser, "#error").await, "", "no red error");

    // With the demo token: its devices, and only its devices.
    browser
        .goto(&format!("{page}?event={private}&token={token}"))
        .await
        .expect("load the map page");
    let granted = wait_for_state(&browser, "the private event's devices show", |s| {
        s["subscribed"] == json!(true) && s["deviceCount"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    for id in device_ids(&granted) {
        assert!(
            !shown.contains(&id),
            "device {id} of the public event shown in the private one"
        );
    }
    assert_eq!(granted["lastError"], Value::Null);
    let search = browser
        .execute("return location.search;", vec![])
        .await
        .expect("read the page's address");
    let search = search.as_str().unwrap_or_default();
    assert!(
        !search.contains("token"),
        "the token left the address: {search}"
    );
    assert!(search.contains(&private), "the event stays in it: {search}");

    browser.close().await.expect("close the browser");
    let _ = std::fs::remove_dir_all(&profile);
    // Stopped before the clean-up, so that neither recreates the test's stream after it.
    drop((fleet, processor));
    env.cleanup().await;
}

/// On the public event (fleet seed gives bibs 1, 2, ... and names "Runner N"): every dot is
/// labelled from `GET /events/<uuid>`, the list holds exactly what the page holds, the view
/// stays put while positions arrive, and a participant chosen in the list stays centred.
async fn participants_are_labelled_listed_and_followed(browser: &Client) {
    // The page's state and its list's rows read in one script, so that they are of one moment.
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    let (state, rows) = loop {
        let both = browser
            .execute(
                "return { state: window.processorMap.snapshot(), rows: \
                 [...document.querySelectorAll('#list li')].map(li => li.dataset.device) };",
                vec![],
            )
            .await
            .expect("read the page");
        let state = both["state"].clone();
        let rows: Vec<String> = serde_json::from_value(both["rows"].clone()).unwrap_or_default();
        let listed: Vec<String> =
            serde_json::from_value(state["listed"].clone()).unwrap_or_default();
        let mut held = device_ids(&state);
        let mut sorted_rows = rows.clone();
        held.sort();
        sorted_rows.sort();
        let labelled = held.iter().all(|id| {
            state["devices"][id]["label"]
                .as_str()
                .is_some_and(|l| l.contains("Runner"))
        });
        if !held.is_empty() && labelled && rows == listed && sorted_rows == held {
            break (state, rows);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting until every participant is labelled and listed: {state}, rows {rows:?}"
        );
        tokio::time::sleep(support::live::POLL).await;
    };
    // In bib order, as numbers (2 before 10).
    let bibs: Vec<u64> = rows
        .iter()
        .filter_map(|id| {
            state["devices"][id]["label"]
                .as_str()?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(bibs.len(), rows.len(), "every label starts with its bib");
    let mut sorted = bibs.clone();
    sorted.sort();
    assert_eq!(bibs, sorted, "the list is in bib order");
    let listed = rows;

    // No re-fit while positions arrive: the view is where it was.
    let before = page_state(browser).await;
    wait_for_state(browser, "more positions arrive", |s| {
        s["positions"].as_u64() > before["positions"].as_u64().map(|n| n + 5)
    })
    .await;
    assert_eq!(
        page_state(browser).await["view"],
        before["view"],
        "the view stays put"
    );

    let chosen = listed[0].clone();
    let row = format!("#list li[data-device='{chosen}']");
    let clicked_at = page_state(browser).await["devices"][&chosen]["ts"].as_i64();
    browser
        .find(Locator::Css(&row))
        .await
        .expect("the participant's row")
        .click()
        .await
        .expect("click the row");
    let followed = wait_for_state(
        browser,
        "the chosen participant moves and stays centred",
        |s| {
            let on = &s["selectedOnScreen"];
            let centred = |a: &str, b: &str| match (on[a].as_f64(), on[b].as_f64()) {
                (Some(p), Some(c)) => (p - c).abs() < 1.0,
                _ => false,
            };
            s["selected"] == json!(chosen)
                && s["following"] == json!(true)
                && s["devices"][&chosen]["ts"].as_i64() > clicked_at
                && centred("x", "centerX")
                && centred("y", "centerY")
        },
    )
    .await;
    assert!(text_of(browser, "#following").await.contains("Following"));
    assert_eq!(followed["following"], json!(true));
}

/// The page's Content-Security-Policy, as served with `/`.
async fn page_policy(addr: SocketAddr) -> String {
    let (status, head, _) = support::http_get(addr, "/")
        .await
        .expect("the page is served");
    assert_eq!(status, 200);
    head.lines()
        .find_map(|l| l.strip_prefix("content-security-policy:"))
        .expect("the page carries a Content-Security-Policy")
        .trim()
        .to_owned()
}

/// Every URL the page has fetched (images, scripts, `fetch`), from the browser's own record.
async fn fetched(browser: &Client) -> Vec<String> {
    let names = browser
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name);",
            vec![],
        )
        .await
        .expect("read the page's resource timings");
    serde_json::from_value(names).unwrap_or_default()
}

/// Without LIVE_MAP_TILE_URL (the default): no tile layer, no image, and nothing fetched from
/// any origin but the processor's; the policy allows no other.
async fn nothing_is_fetched_from_elsewhere_without_a_tile_layer(
    browser: &Client,
    addr: SocketAddr,
) {
    let state = page_state(browser).await;
    assert_eq!(state["tiles"], Value::Null, "no tile layer: {state}");
    let images = browser
        .execute("return document.images.length;", vec![])
        .await
        .expect("count the page's images");
    assert_eq!(images, json!(0));
    let origin = format!("http://{addr}/");
    let fetched = fetched(browser).await;
    assert!(!fetched.is_empty(), "the page's own assets are recorded");
    for url in &fetched {
        assert!(url.starts_with(&origin), "{url} is not from {origin}");
    }
    assert!(
        !text_of(browser, "#attribution").await.contains('©'),
        "no attribution without tiles"
    );
    let policy = page_policy(addr).await;
    assert!(policy.contains("img-src 'self' data:;"), "{policy}");
}

/// A tile server on a local port (tests have no internet): answers every GET with one plain
/// SVG tile and records the paths asked for.
async fn tile_server() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const TILE: &str = "<svg xmlns='http://www.w3.org/2000/svg' width='256' height='256'>\
                        <rect width='256' height='256' fill='#dde8d0'/></svg>";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the tile server");
    let addr = listener.local_addr().expect("the tile server's address");
    let paths = Arc::new(Mutex::new(Vec::new()));
    let seen = paths.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 2048];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16_384 {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                if let Some(path) = head.split(' ').nth(1) {
                    seen.lock().expect("the path list").push(path.to_owned());
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: image/svg+xml\r\nContent-Length: {}\r\n\
                     Cache-Control: no-store\r\nConnection: close\r\n\r\n{TILE}",
                    TILE.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (addr, paths)
}

/// Web Mercator in [0, 1] (y southwards), computed here independently of the page.
fn mercator(lat: f64, lon: f64) -> (f64, f64) {
    let phi = lat.to_radians();
    let y =
        (1.0 - (std::f64::consts::FRAC_PI_4 + phi / 2.0).tan().ln() / std::f64::consts::PI) / 2.0;
    ((lon + 180.0) / 360.0, y)
}

/// With LIVE_MAP_TILE_URL pointing at a local tile server (a second processor on the same
/// stream and schema): the page asks that server, and only it, for `{z}/{x}/{y}` tiles, its
/// policy allows that origin, the attribution shows, and every dot is drawn where Web
/// Mercator puts it in the frame, on a tile that was requested.
async fn tiles_come_from_the_configured_template_under_the_positions(
    browser: &Client,
    env: &TestEnv,
    public: &str,
) {
    let (tiles_addr, requested) = tile_server().await;
    let template = format!("http://{tiles_addr}/tiles/{{z}}/{{x}}/{{y}}.png");
    let attribution = "Test tiles © nobody";
    let processor = Processor::start(
        env,
        "browser-tiles",
        &[
            ("LIVE_AUTH_JWT_SECRET", SECRET.to_owned()),
            ("LIVE_DEVICE_EVENT_REFRESH_MS", "200".to_owned()),
            ("LIVE_MAP_TILE_URL", template.clone()),
            ("LIVE_MAP_TILE_ATTRIBUTION", attribution.to_owned()),
        ],
    );
    wait_until("the second processor is ready", || async {
        processor.ready().await == Some(true)
    })
    .await;
    let policy = page_policy(processor.ws_addr).await;
    assert!(
        policy.contains(&format!("img-src 'self' data: http://{tiles_addr};")),
        "{policy}"
    );
    browser
        .goto(&format!("http://{}/?event={public}", processor.ws_addr))
        .await
        .expect("load the map page with tiles");
    let state = wait_for_state(browser, "devices are drawn over loaded tiles", |s| {
        s["frame"]["dots"].as_object().is_some_and(|d| d.len() >= 3)
            && s["tiles"]["loaded"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert_eq!(state["tiles"]["template"], json!(template));
    assert_eq!(state["tiles"]["failed"], json!(0), "{state}");
    assert_eq!(text_of(browser, "#attribution").await, attribution);

    let frame = &state["frame"];
    let number = |v: &Value| v.as_f64().expect("a number in the frame");
    let (k, width, height) = (
        number(&frame["worldPx"]),
        number(&frame["width"]),
        number(&frame["height"]),
    );
    let (cx, cy) = mercator(number(&frame["lat"]), number(&frame["lon"]));
    let zoom = state["tiles"]["zoom"].as_u64().expect("the tile zoom");
    assert!(
        (k / 256.0).log2().round().clamp(0.0, 19.0) as u64 == zoom,
        "tiles of the zoom nearest the view's scale: {state}"
    );
    let paths = requested.lock().expect("the path list").clone();
    for (id, dot) in frame["dots"].as_object().expect("the drawn dots") {
        let (x, y) = mercator(number(&dot["lat"]), number(&dot["lon"]));
        let (sx, sy) = (width / 2.0 + (x - cx) * k, height / 2.0 + (y - cy) * k);
        assert!(
            (number(&dot["x"]) - sx).abs() < 0.5 && (number(&dot["y"]) - sy).abs() < 0.5,
            "{id} drawn at ({}, {}), Web Mercator puts it at ({sx}, {sy})",
            dot["x"],
            dot["y"]
        );
        let n = f64::from(1u32 << zoom);
        let tile = format!(
            "/tiles/{zoom}/{}/{}.png",
            (x * n).floor() as u64,
            (y * n).floor() as u64
        );
        assert!(
            paths.contains(&tile),
            "{id}'s tile {tile} was asked for: {paths:?}"
        );
    }
    for path in &paths {
        let parts: Vec<&str> = path
            .strip_prefix("/tiles/")
            .and_then(|p| p.strip_suffix(".png"))
            .map(|p| p.split('/').collect())
            .unwrap_or_default();
        assert!(
            parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()),
            "a tile path from the template: {path}"
        );
    }
    let page_origin = format!("http://{}/", processor.ws_addr);
    let tiles_origin = format!("http://{tiles_addr}/tiles/");
    for url in fetched(browser).await {
        assert!(
            url.starts_with(&page_origin) || url.starts_with(&tiles_origin),
            "{url} is from neither the page nor the tile server"
        );
    }
}

/// A reload draws trails from the snapshot (more points than the snapshot's positions and
/// the live ones since); after the connection drops, the page resumes with `since` and every
/// position stored since the drop is in its tracks.
async fn trails_then_a_resume_without_a_hole(
    env: &TestEnv,
    browser: &Client,
    page: &str,
    public: &str,
) {
    browser
        .goto(&format!("{page}?event={public}"))
        .await
        .expect("load the map page");
    let loaded = wait_for_state(browser, "the snapshot with trails is drawn", |s| {
        s["snapshots"] == json!(1) && s["deviceCount"].as_u64().unwrap_or(0) >= 3
    })
    .await;
    let points: u64 = loaded["devices"]
        .as_object()
        .map(|d| d.values().filter_map(|v| v["points"].as_u64()).sum())
        .unwrap_or(0);
    let heads = loaded["deviceCount"].as_u64().unwrap_or(0);
    let live = loaded["positions"].as_u64().unwrap_or(0);
    assert!(
        points > heads + live,
        "trails came with the snapshot: {points} points, {heads} devices, {live} live"
    );

    let dropped = browser
        .execute("return window.processorMap.dropConnection();", vec![])
        .await
        .expect("drop the page's connection");
    assert_eq!(dropped, json!(true));
    let before = page_state(browser).await;
    let resumed = wait_for_state(browser, "the page resumed and moved on", |s| {
        s["subscribed"] == json!(true)
            && s["resumes"].as_u64().unwrap_or(0) >= 1
            && device_ids(&before).iter().all(|id| {
                s["devices"][id]["ts"].as_i64().unwrap_or(0)
                    > before["devices"][id]["ts"].as_i64().unwrap_or(i64::MAX) + 3_000
            })
    })
    .await;
    assert_eq!(resumed["truncatedResumes"], json!(0));
    // Every stored position between what the page had and what it has now is in its track.
    let pg = env.pg().await;
    for id in device_ids(&before) {
        let from = before["devices"][&id]["ts"].as_i64().unwrap_or(0);
        let to = resumed["devices"][&id]["ts"].as_i64().unwrap_or(0);
        let shown: std::collections::BTreeSet<i64> = resumed["devices"][&id]["times"]
            .as_array()
            .map(|t| t.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        let rows = pg
            .query(
                "SELECT floor(extract(epoch FROM ts) * 1000)::int8 FROM positions
                 WHERE device_id = $1 AND NOT faulty
                   AND ts > to_timestamp($2::int8 / 1000.0) AND ts <= to_timestamp($3::int8 / 1000.0)",
                &[&id, &from, &to],
            )
            .await
            .expect("read the stored track");
        for row in rows {
            let ts: i64 = row.get(0);
            assert!(
                shown.contains(&ts),
                "device {id}: {ts} stored but not drawn"
            );
        }
    }
}

/// A replay of a few seconds the page has drawn, chosen in its form at 10x: it ends, and
/// shows per device its trail as it was at `from` and exactly the positions stored in the
/// window after it; then back to live.
async fn a_replay_plays_what_was_stored_then_back_to_live(
    env: &TestEnv,
    browser: &Client,
    fleet: &Running,
) {
    // A replay shows what is stored when it reads: the fleet is paused (its late uploads
    // too) and every entry it published is stored first, so that what the replay reads is
    // what the comparison below reads.
    signal(fleet, "-STOP");
    wait_until("everything published is stored", || async {
        env.durable_lag().await == Some(0) && env.pending().await == 0
    })
    .await;
    let state = page_state(browser).await;
    let first = device_ids(&state)
        .iter()
        .filter_map(|id| state["devices"][id]["times"][0].as_i64())
        .min()
        .expect("the page has drawn something");
    // Whole seconds: the form's fields have a resolution of one second.
    let from = (first / 1_000 + 2) * 1_000;
    let to = from + 4_000;
    let set = format!(
        "const local = (ms) => new Date(ms - new Date(ms).getTimezoneOffset() * 60000)
             .toISOString().slice(0, 19);
         document.getElementById('replay-from').value = local({from});
         document.getElementById('replay-to').value = local({to});
         document.getElementById('replay-speed').value = '10';
         return true;"
    );
    browser
        .execute(&set, vec![])
        .await
        .expect("fill in the replay form");
    browser
        .find(Locator::Id("replay-play"))
        .await
        .expect("the Replay button")
        .click()
        .await
        .expect("click Replay");
    let ended = wait_for_state(browser, "the replay ends", |s| {
        s["replay"]["ended"] == json!(true)
    })
    .await;
    assert_eq!(ended["replay"]["from"], json!(from));
    assert_eq!(ended["replay"]["to"], json!(to));
    let pg = env.pg().await;
    for id in device_ids(&ended) {
        let times: Vec<i64> = ended["devices"][&id]["times"]
            .as_array()
            .map(|t| t.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        assert!(times.first().is_some_and(|t| *t <= from), "{id}: {times:?}");
        // The replay's snapshot at `from` with its trail (the page asks for 600 s): every
        // stored non-faulty fix of the device up to `from`, as the run is shorter than that.
        let until_from: Vec<i64> = times.iter().copied().filter(|t| *t <= from).collect();
        let rows = pg
            .query(
                "SELECT floor(extract(epoch FROM ts) * 1000)::int8 FROM positions
                 WHERE device_id = $1 AND NOT faulty AND ts <= to_timestamp($2::int8 / 1000.0)
                 ORDER BY ts",
                &[&id, &from],
            )
            .await
            .expect("read what was stored up to from");
        let stored_until: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(until_from, stored_until, "device {id}: the trail at from");
        let played: Vec<i64> = times.into_iter().filter(|t| *t > from).collect();
        let rows = pg
            .query(
                "SELECT floor(extract(epoch FROM ts) * 1000)::int8 FROM positions
                 WHERE device_id = $1 AND NOT faulty
                   AND ts > to_timestamp($2::int8 / 1000.0) AND ts <= to_timestamp($3::int8 / 1000.0)
                 ORDER BY ts",
                &[&id, &from, &to],
            )
            .await
            .expect("read the stored window");
        let stored: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(played, stored, "device {id}");
    }
    signal(fleet, "-CONT");
    browser
        .find(Locator::Id("replay-live"))
        .await
        .expect("the Live button")
        .click()
        .await
        .expect("click Live");
    let snapshots = ended["snapshots"].as_u64().unwrap_or(0);
    wait_for_state(browser, "back to live", |s| {
        s["replay"].is_null() && s["snapshots"].as_u64().unwrap_or(0) > snapshots
    })
    .await;
}
