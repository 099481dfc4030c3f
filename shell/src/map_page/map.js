"use strict";

// Live map of one event: subscribes to `event:<uuid>` on /live (contract section 5) and draws
// every device's latest position and short trail on a canvas, in Web Mercator, over map tiles
// when the server configures a tile layer (LIVE_MAP_TILE_URL; without one nothing is fetched
// from anywhere but this origin). Participants are labelled with the bib and name
// `GET /events/<uuid>` gives, listed beside the map, and can be followed; the view stays where
// the user zoomed and panned it.
(() => {
  // Points kept per device: the snapshot's trail (at most LIVE_TRAIL_MAX_POINTS, 100 by
  // default) and what follows live.
  const TRAIL_MAX = 200;
  // Seconds of trail asked for on a fresh subscribe (contract section 5.1).
  const TRAIL_S = 600;
  // Bibs are short: up to this many participants every dot is labelled.
  const LABEL_MAX_DEVICES = 150;
  // The view's scale is the width of the whole Mercator world in pixels, as in every web map:
  // tile zoom z is 256 * 2^z. From one tile for the world to a few metres across the screen.
  const TILE_PX = 256;
  const WORLD_PX_MIN = TILE_PX;
  const WORLD_PX_MAX = TILE_PX * 2 ** 23;
  // Most XYZ servers (OpenStreetMap's included) stop at 19; closer views stretch those tiles.
  const TILE_MAX_ZOOM = 19;
  // Tiles kept (loaded or loading); a screen needs about a hundred.
  const TILE_CACHE_MAX = 400;
  // Coarser tiles drawn, stretched, while a tile is loading (zooming in shows no holes).
  const TILE_FALLBACK_LEVELS = 4;
  const CLICK_SLOP_PX = 4;
  // A fix older than this is marked stale in the list.
  const STALE_MS = 60000;
  // Closes that are not the client's fault; everything else (1008, 1009, ...) would repeat.
  const RECONNECT_CODES = new Set([1001, 1006, 1011, 1013]);
  const BACKOFF_MIN_MS = 1000;
  const BACKOFF_MAX_MS = 10000;
  // A socket that never opens is almost always a 401 (bad token), which retrying cannot fix.
  const MAX_NEVER_OPENED = 3;
  // Web Mercator's sphere (EPSG:3857), the one tile servers render on.
  const EARTH_CIRCUMFERENCE_M = 2 * Math.PI * 6378137;
  // Where Web Mercator's square world ends; positions beyond are drawn on its edge.
  const MERCATOR_MAX_LAT = 85.0511287798066;
  // A lone device still gets some surroundings instead of an infinite zoom.
  const MIN_SPAN_M = 200;
  const PADDING = 0.08;
  const OTHER = "__other__";
  const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const REFUSED = "refused or unreachable — check the token";
  const CLOSE_REASONS = {
    1000: "closed normally",
    1001: "server shutting down",
    1006: "connection lost",
    1008: "policy violation",
    1009: "message too big",
    1011: "server error",
    1013: "too slow, dropped by the server",
  };

  const $ = (id) => document.getElementById(id);
  const ui = {
    form: $("controls"),
    select: $("event-select"),
    eventId: $("event-id"),
    token: $("token"),
    connect: $("connect"),
    disconnect: $("disconnect"),
    stateItem: document.querySelector(".state-item"),
    state: $("state"),
    rate: $("rate"),
    age: $("age"),
    count: $("count"),
    error: $("error"),
    canvas: $("map"),
    fit: $("fit"),
    notice: $("notice"),
    attribution: $("attribution"),
    search: $("search"),
    sort: $("sort"),
    list: $("list"),
    replay: $("replay"),
    replayFrom: $("replay-from"),
    replayTo: $("replay-to"),
    replaySpeed: $("replay-speed"),
    replayPause: $("replay-pause"),
    replaySeek: $("replay-seek"),
    replayLive: $("replay-live"),
    replayState: $("replay-state"),
    following: $("following"),
  };
  const ctx = ui.canvas.getContext("2d");

  // The tile layer the server wrote into the page (LIVE_MAP_TILE_URL), or null: then no tile
  // is ever requested and the page needs nothing but its own origin.
  const tileLayer = (() => {
    const url = document.body.dataset.tileUrl || "";
    // The server checked it; this only keeps a hand-edited page from fetching "javascript:".
    if (!/^https?:\/\//i.test(url)) return null;
    return { template: url, attribution: document.body.dataset.tileAttribution || "" };
  })();
  if (tileLayer && tileLayer.attribution) {
    ui.attribution.textContent = tileLayer.attribution;
    ui.attribution.hidden = false;
  }

  // What window.processorMap.snapshot() reports.
  const state = {
    connection: "idle",
    topic: null,
    subscribed: false,
    snapshots: 0,
    positions: 0,
    resumes: 0, // snapshots that answered a resume (`since`)
    truncatedResumes: 0,
    devices: new Map(), // deviceId -> { trail: [{lat, lon, ts}], color, speed, course }
    lastError: null,
    closeCode: null,
    // From GET /events/<uuid>: deviceId -> { bib, name } of its entry.
    entries: new Map(),
    eventName: null,
    // "unknown" until the server answers, "ok", or "needs_token" (refused without one) or
    // "not_visible" (refused with one): private and nonexistent events look the same.
    access: "unknown",
    selected: null, // deviceId
    following: false,
    // The view: centre in Mercator units (x, y in [0, 1], y southwards) and the world's width in
    // pixels (k); null until the first positions are fitted.
    view: null,
    listed: [], // deviceIds in the list's order, as last rendered
  };

  let ws = null;
  let token = "";
  let wantOpen = false; // the user asked for a connection and has not cancelled it
  let reconnectTimer = 0;
  let backoff = BACKOFF_MIN_MS;
  let neverOpened = 0;
  let lastDataAt = 0; // performance.now() of the last snapshot or position, 0 before any
  // The replay shown instead of the live event (contract section 5.1), or null: its window
  // (epoch ms), whether it is paused, and whether it reached its end.
  let replay = null;
  const REPLAY_ID = "map";
  const REPLAY_TOPIC = "replay:" + REPLAY_ID;
  // The `since` of the subscribe in flight (a resume after a reconnect), or null for a fresh
  // subscribe that asked for trails: it says how to read the snapshot that answers it.
  let resumeSince = null;
  const rateSamples = []; // {t, n}: position counter sampled by the ticker

  // ---- connection ----------------------------------------------------------------------------

  // A Connect from the user starts a fresh session: counters and devices belong to one topic.
  function connect() {
    let id = ui.eventId.value.trim();
    if (!id) {
      setError("bad_input", "enter or choose an event id");
      return;
    }
    // The server writes topics in lower case; sending that form keeps comparisons trivial.
    if (UUID_RE.test(id)) id = id.toLowerCase();
    dropSocket();
    replay = null;
    renderReplay();
    state.topic = "event:" + id;
    state.subscribed = false;
    state.snapshots = 0;
    state.positions = 0;
    state.resumes = 0;
    state.truncatedResumes = 0;
    state.devices.clear();
    state.lastError = null;
    state.closeCode = null;
    state.entries.clear();
    state.eventName = null;
    state.access = "unknown";
    state.selected = null;
    state.following = false;
    state.view = null;
    token = ui.token.value.trim();
    renderNotice();
    loadDetails(id, token);
    lastDataAt = 0;
    rateSamples.length = 0;
    hovered = null;
    wantOpen = true;
    backoff = BACKOFF_MIN_MS;
    neverOpened = 0;
    renderError();
    requestDraw();
    openSocket();
  }

  function disconnect() {
    const wasOpen = ws !== null && ws.readyState === WebSocket.OPEN;
    dropSocket();
    if (wasOpen) state.closeCode = 1000;
    state.subscribed = false;
    setConnection("closed", "closed by you");
  }

  // Forgets the current socket and any pending reconnect; its late events must not touch state.
  function dropSocket() {
    wantOpen = false;
    clearTimeout(reconnectTimer);
    reconnectTimer = 0;
    const old = ws;
    ws = null;
    if (!old) return;
    old.onmessage = old.onerror = old.onclose = null;
    if (old.readyState === WebSocket.CONNECTING) {
      // Closing a socket still connecting makes the browser log an error; close it once open.
      old.onopen = () => old.close(1000);
    } else {
      old.onopen = null;
      old.close(1000);
    }
  }

  function openSocket() {
    reconnectTimer = 0;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let url = `${scheme}//${location.host}/live`;
    if (token) url += "?access_token=" + encodeURIComponent(token);
    let sock;
    try {
      sock = new WebSocket(url);
    } catch (e) {
      wantOpen = false;
      setError("bad_input", String(e && e.message ? e.message : e));
      setConnection("closed", "closed: cannot open the socket");
      return;
    }
    ws = sock;
    let opened = false;
    setConnection("connecting", "connecting");
    sock.onopen = () => {
      opened = true;
      neverOpened = 0;
      backoff = BACKOFF_MIN_MS;
      setConnection("open", "open");
      // Back after a drop: ask for everything after the oldest of the devices' newest fixes,
      // so that no track has a hole (what a device already has is dropped by its ts).
      resumeSince = null;
      for (const d of state.devices.values()) {
        const last = d.trail[d.trail.length - 1].ts;
        if (resumeSince === null || last < resumeSince) resumeSince = last;
      }
      const subscribe = { type: "subscribe", topic: state.topic };
      if (resumeSince === null) subscribe.trail_s = TRAIL_S;
      else subscribe.since = resumeSince;
      sock.send(JSON.stringify(subscribe));
    };
    sock.onmessage = (ev) => onFrame(ev.data);
    // The browser tells nothing useful on error (not even a 401); the close event follows.
    sock.onerror = () => {};
    sock.onclose = (ev) => onClosed(ev.code, opened);
  }

  function onClosed(code, opened) {
    ws = null;
    // A replay lives on its connection; after a drop the page goes back to live.
    if (replay !== null) {
      replay = null;
      state.devices.clear();
      renderReplay();
    }
    state.closeCode = code;
    state.subscribed = false;
    if (!opened) neverOpened += 1;
    const reason = !opened && code === 1006 ? REFUSED : CLOSE_REASONS[code] || "closed";
    const text = `closed (${code}): ${reason}`;
    if (wantOpen && RECONNECT_CODES.has(code) && neverOpened < MAX_NEVER_OPENED) {
      const delay = backoff;
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      reconnectTimer = setTimeout(openSocket, delay);
      setConnection("closed", `${text} · retrying in ${delay / 1000} s`);
    } else {
      wantOpen = false;
      setConnection("closed", text);
    }
  }

  function onFrame(data) {
    if (typeof data !== "string") return;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return; // a broken frame is not worth breaking the page for
    }
    if (!msg || typeof msg !== "object") return;
    // While a replay is shown, its messages are the page's, and the live topic's are not.
    const mine =
      typeof msg.topic === "string" &&
      (replay !== null
        ? msg.topic === REPLAY_TOPIC
        : state.topic !== null && msg.topic.toLowerCase() === state.topic.toLowerCase());
    switch (msg.type) {
      case "subscribed":
        if (mine && replay !== null) {
          replay.subscribed = true;
          renderReplay();
        } else if (mine) {
          state.subscribed = true;
          setConnection("subscribed", "subscribed");
        }
        break;
      case "unsubscribed":
        if (mine) {
          state.subscribed = false;
          setConnection("open", "open (not subscribed)");
        }
        break;
      case "snapshot":
        state.snapshots += 1;
        lastDataAt = performance.now();
        if (mine && Array.isArray(msg.positions)) {
          if (replay !== null || resumeSince === null) applySnapshot(msg.positions);
          else applyResume(msg.positions, msg.truncated === true);
        }
        break;
      case "position":
        state.positions += 1;
        lastDataAt = performance.now();
        if (mine) applyPosition(msg);
        break;
      case "replay_end":
        if (replay !== null && msg.topic === REPLAY_TOPIC) {
          replay.ended = true;
          renderReplay();
        }
        break;
      case "error":
        if (mine && msg.code === "forbidden") {
          // Private (or nonexistent, which looks the same): a state to explain, not an error.
          setAccess(token ? "not_visible" : "needs_token");
          state.lastError = { code: "forbidden", message: String(msg.message || "") };
          break;
        }
        setError(String(msg.code || "error"), String(msg.message || ""));
        break;
      default:
        break; // pong and anything newer
    }
  }

  // ---- replay --------------------------------------------------------------------------------

  // datetime-local values are local time without a zone: Date parses them as such.
  function localMillis(input) {
    const t = new Date(input.value).getTime();
    return Number.isFinite(t) ? t : null;
  }

  function send(message) {
    if (ws === null || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(message));
    return true;
  }

  // Plays the chosen window of the event (the last ten minutes when none is chosen) instead
  // of the live positions.
  function startReplay() {
    if (state.topic === null || !state.topic.startsWith("event:")) {
      setError("bad_input", "connect to an event first");
      return;
    }
    const now = Date.now();
    const to = localMillis(ui.replayTo) ?? now;
    const from = localMillis(ui.replayFrom) ?? to - 600000;
    if (!(from <= to)) {
      setError("bad_input", "the replay's start must not be after its end");
      return;
    }
    const speed = Number(ui.replaySpeed.value) || 10;
    if (replay === null) send({ type: "unsubscribe", topic: state.topic });
    const message = {
      type: "replay", id: REPLAY_ID, event: state.topic.slice("event:".length), from, to, speed,
      // Each device's track as it was at `from`, as a live subscribe shows it now.
      trail_s: TRAIL_S,
    };
    if (!send(message)) {
      setError("bad_input", "not connected");
      return;
    }
    replay = { from, to, speed, paused: false, ended: false, subscribed: false };
    state.devices.clear();
    state.view = null;
    renderReplay();
    requestDraw();
  }

  function pauseReplay() {
    if (replay === null || replay.ended) return;
    replay.paused = !replay.paused;
    send({ type: "replay_control", id: REPLAY_ID, paused: replay.paused });
    renderReplay();
  }

  function seekReplay() {
    if (replay === null) return;
    const at = Math.round(replay.from + ((replay.to - replay.from) * Number(ui.replaySeek.value)) / 1000);
    replay.ended = false;
    send({ type: "replay_control", id: REPLAY_ID, seek: at });
    renderReplay();
  }

  // Back to the live event, with trails.
  function backToLive() {
    if (replay === null) return;
    send({ type: "unsubscribe", topic: REPLAY_TOPIC });
    replay = null;
    state.devices.clear();
    resumeSince = null;
    send({ type: "subscribe", topic: state.topic, trail_s: TRAIL_S });
    renderReplay();
    requestDraw();
  }

  function renderReplay() {
    const on = replay !== null;
    ui.replayPause.disabled = !on || replay.ended;
    ui.replaySeek.disabled = !on;
    ui.replayLive.disabled = !on;
    ui.replayPause.textContent = on && replay.paused ? "Resume" : "Pause";
    ui.replayState.textContent = !on
      ? ""
      : replay.ended
        ? "replay ended"
        : replay.paused
          ? "replay paused"
          : `replaying at ${replay.speed}×`;
  }

  // ---- devices -------------------------------------------------------------------------------

  function toPoint(p) {
    if (!p || typeof p !== "object") return null;
    const id = p.deviceId;
    if ((typeof id !== "string" && typeof id !== "number") || id === "") return null;
    const { lat, lon, ts } = p;
    if (!Number.isFinite(lat) || !Number.isFinite(lon) || !Number.isFinite(ts)) return null;
    if (Math.abs(lat) > 90 || Math.abs(lon) > 180) return null;
    // Projected once here, not in every frame.
    return { id: String(id), pt: { lat, lon, ts, x: mercX(lon), y: mercY(lat) } };
  }

  // `speed` and `course` are omitted on the wire when 0.
  function motion(p) {
    return {
      speed: Number.isFinite(p.speed) ? p.speed : 0,
      course: Number.isFinite(p.course) ? p.course : 0,
    };
  }

  // A fresh snapshot: each device with its trail, oldest first, then its position.
  function applySnapshot(positions) {
    state.devices.clear();
    for (const p of positions) {
      const v = toPoint(p);
      if (!v) continue;
      const trail = [];
      if (Array.isArray(p.trail)) {
        for (const t of p.trail) {
          if (!Array.isArray(t) || t.length !== 3) continue;
          const [ts, lat, lon] = t;
          if (!Number.isFinite(ts) || !Number.isFinite(lat) || !Number.isFinite(lon)) continue;
          if (trail.length > 0 && !(ts > trail[trail.length - 1].ts)) continue;
          if (ts < v.pt.ts) trail.push({ lat, lon, ts });
        }
      }
      trail.push(v.pt);
      while (trail.length > TRAIL_MAX) trail.shift();
      state.devices.set(v.id, { trail, color: colorFor(v.id), ...motion(p) });
    }
    setAccess("ok");
    requestDraw();
  }

  // A resumed snapshot: every position since the drop, per device in ts order, appended to
  // what the page has (a `truncated` one holds only the newest per device: the tracks get a
  // straight segment over what was missed).
  function applyResume(positions, truncated) {
    state.resumes += 1;
    if (truncated) state.truncatedResumes += 1;
    for (const p of positions) applyPosition(p);
    setAccess("ok");
    requestDraw();
  }

  function applyPosition(msg) {
    const v = toPoint(msg);
    if (!v) return;
    const d = state.devices.get(v.id);
    if (!d) {
      state.devices.set(v.id, { trail: [v.pt], color: colorFor(v.id), ...motion(msg) });
    } else {
      // The server promises ts never goes backwards; a duplicate or older fix is dropped anyway.
      if (!(v.pt.ts > d.trail[d.trail.length - 1].ts)) return;
      d.trail.push(v.pt);
      if (d.trail.length > TRAIL_MAX) d.trail.shift();
      Object.assign(d, motion(msg));
    }
    requestDraw();
  }

  // ---- participants (GET /events/<uuid>) -------------------------------------------------------

  async function loadDetails(id, tok) {
    const topic = state.topic;
    let res;
    try {
      const headers = { Accept: "application/json" };
      if (tok) headers.Authorization = "Bearer " + tok;
      res = await fetch("/events/" + encodeURIComponent(id), { headers, cache: "no-store" });
    } catch {
      return; // labels fall back to device ids; the live data still flows
    }
    if (state.topic !== topic) return; // the user moved on meanwhile
    if (res.status === 404 || res.status === 401) {
      setAccess(tok ? "not_visible" : "needs_token");
      return;
    }
    if (!res.ok) return;
    let body;
    try {
      body = await res.json();
    } catch {
      return;
    }
    if (state.topic !== topic || !body || !Array.isArray(body.entries)) return;
    state.eventName = typeof body.name === "string" ? body.name : null;
    for (const e of body.entries) {
      if (!e || !Array.isArray(e.devices)) continue;
      const who = {
        bib: typeof e.bib === "string" ? e.bib : null,
        name: typeof e.name === "string" ? e.name : null,
      };
      for (const d of e.devices) if (typeof d === "string") state.entries.set(d, who);
    }
    if (state.access === "unknown") setAccess("ok");
    requestDraw();
  }

  // What a participant is called on the map and in the list: bib and name when known.
  function labelOf(id) {
    const who = state.entries.get(id);
    if (!who) return id;
    if (who.bib && who.name) return `${who.bib} ${who.name}`;
    return who.bib || who.name || id;
  }

  function setAccess(access) {
    state.access = access;
    renderNotice();
  }

  function renderNotice() {
    const needs = state.access === "needs_token";
    const hidden = state.access === "not_visible";
    document.body.classList.toggle("needs-token", needs);
    if (!needs && !hidden) {
      ui.notice.hidden = true;
      ui.notice.replaceChildren();
      return;
    }
    const title = document.createElement("strong");
    title.textContent = needs ? "This event needs a token" : "This token does not open this event";
    const text = document.createElement("span");
    text.textContent = needs
      ? "It is private, or its id is wrong. Paste the token you were given above and connect."
      : "The event is private and the token does not grant it, or its id is wrong.";
    ui.notice.replaceChildren(title, text);
    ui.notice.hidden = false;
  }

  // FNV-1a, so a device keeps its colour across reloads and reconnects.
  function colorFor(id) {
    let h = 0x811c9dc5;
    for (let i = 0; i < id.length; i++) {
      h ^= id.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
    h >>>= 0;
    const hue = h % 360;
    const light = 36 + ((h >>> 9) % 14); // some spread so neighbouring hues still differ
    return `hsl(${hue}, 70%, ${light}%)`;
  }

  // ---- status line ---------------------------------------------------------------------------

  function setConnection(connection, text) {
    state.connection = connection;
    ui.state.textContent = text;
    ui.stateItem.dataset.state = connection;
    ui.disconnect.disabled = ws === null && !wantOpen;
    requestDraw(); // the empty-map hint depends on the state
  }

  function setError(code, message) {
    state.lastError = { code, message };
    renderError();
  }

  function renderError() {
    const e = state.lastError;
    ui.error.textContent = e ? (e.message ? `${e.code}: ${e.message}` : e.code) : "";
  }

  // Numbers that change with every message are refreshed on a timer, not per message.
  function tick() {
    const now = performance.now();
    rateSamples.push({ t: now, n: state.positions });
    while (rateSamples.length > 2 && now - rateSamples[1].t >= 1000) rateSamples.shift();
    const first = rateSamples[0];
    const dt = now - first.t;
    const rate = dt > 0 ? ((state.positions - first.n) * 1000) / dt : 0;
    ui.rate.textContent = String(Math.round(rate));
    ui.age.textContent = lastDataAt ? ((now - lastDataAt) / 1000).toFixed(1) : "—";
    ui.count.textContent = String(state.devices.size);
    renderList();
  }

  const SORTS = {
    bib: (a, b) => compareBibs(a.who?.bib, b.who?.bib) || a.label.localeCompare(b.label),
    name: (a, b) => a.label.localeCompare(b.label, undefined, { numeric: true }),
    speed: (a, b) => b.d.speed - a.d.speed || a.label.localeCompare(b.label),
    seen: (a, b) => b.ts - a.ts || a.label.localeCompare(b.label),
  };

  // Numbers by value (2 before 10), then text; participants without a bib last.
  function compareBibs(a, b) {
    if (!a || !b) return (a ? 0 : 1) - (b ? 0 : 1);
    return a.localeCompare(b, undefined, { numeric: true });
  }

  function ageText(ms) {
    if (ms < 0) ms = 0;
    const s = Math.round(ms / 1000);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    return `${Math.floor(s / 3600)} h`;
  }

  // Compass point of a course in degrees (0 = north, clockwise).
  function compass(deg) {
    const points = ["N", "NE", "E", "SE", "S", "SW", "W", "NW"];
    return points[Math.round((((deg % 360) + 360) % 360) / 45) % 8];
  }

  const rowEls = new Map(); // deviceId -> the elements of its list row

  function rowFor(id) {
    let row = rowEls.get(id);
    if (row) return row;
    const li = document.createElement("li");
    li.dataset.device = id;
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    const who = document.createElement("span");
    who.className = "who";
    who.title = id;
    const bib = document.createElement("span");
    bib.className = "bib";
    const name = document.createElement("span");
    who.append(bib, name);
    const age = document.createElement("span");
    age.className = "age";
    age.title = "since its last fix";
    const motion = document.createElement("span");
    motion.className = "motion";
    li.append(swatch, who, age, motion);
    row = { li, swatch, bib, name, age, motion };
    rowEls.set(id, row);
    return row;
  }

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  function renderList() {
    const query = ui.search.value.trim().toLowerCase();
    const now = Date.now();
    const rows = [];
    for (const [id, d] of state.devices) {
      const who = state.entries.get(id);
      const label = labelOf(id);
      const hay = `${label} ${id}`.toLowerCase();
      if (query && !hay.includes(query)) continue;
      rows.push({ id, d, who, label, ts: d.trail[d.trail.length - 1].ts });
    }
    rows.sort(SORTS[ui.sort.value] || SORTS.bib);
    state.listed = rows.map((r) => r.id);
    // Rows are kept and updated in place: a row replaced under the pointer would swallow the
    // click that was meant for it.
    const items = rows.map((r) => {
      const row = rowFor(r.id);
      row.li.classList.toggle("selected", r.id === state.selected);
      const age = now - r.ts;
      row.li.classList.toggle("stale", age > STALE_MS);
      row.swatch.style.background = r.d.color;
      const bib = r.who && r.who.bib ? r.who.bib : "";
      setText(row.bib, bib);
      setText(row.name, bib ? r.who.name || r.id : r.label);
      setText(row.age, ageText(age));
      setText(
        row.motion,
        `${r.d.speed.toFixed(0)} km/h · ${compass(r.d.course)} ${r.d.course.toFixed(0)}°`,
      );
      return row.li;
    });
    for (const id of rowEls.keys()) if (!state.devices.has(id)) rowEls.delete(id);
    const current = ui.list.children;
    const same = current.length === items.length && items.every((li, i) => current[i] === li);
    if (!same) ui.list.replaceChildren(...items);
    ui.following.textContent =
      state.selected === null
        ? ""
        : `${state.following ? "Following" : "Selected"}: ${labelOf(state.selected)}`;
  }

  // ---- drawing -------------------------------------------------------------------------------

  let drawPending = false;
  let hovered = null; // deviceId under the pointer
  // Screen positions of the dots from the last draw, for hovering.
  const dotIds = [];
  const dotX = [];
  const dotY = [];
  const dotPts = []; // the positions they stand for

  function requestDraw() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(draw);
  }

  function draw() {
    drawPending = false;
    const dpr = window.devicePixelRatio || 1;
    const w = ui.canvas.clientWidth;
    const h = ui.canvas.clientHeight;
    const pw = Math.round(w * dpr);
    const ph = Math.round(h * dpr);
    if (ui.canvas.width !== pw || ui.canvas.height !== ph) {
      ui.canvas.width = pw;
      ui.canvas.height = ph;
    }
    // Draw in CSS pixels; the transform maps them to device pixels for sharp lines.
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    dotIds.length = dotX.length = dotY.length = dotPts.length = 0;
    if (w === 0 || h === 0) return;

    const view = currentView(w, h);
    if (!view) {
      drawHint(w, h);
      return;
    }
    lastView = view;
    const step = niceMetres(90 / view.s);
    // The tiles are the reference when there are any; the grid stands in for them otherwise.
    if (tileLayer) drawTiles(view, w, h);
    else drawGrid(view, step, w, h);
    drawTrails(view);
    drawDots(view);
    drawLabels();
    drawScaleBar(view, step, h);
  }

  let lastView = null;

  // ---- Web Mercator --------------------------------------------------------------------------
  // The projection of XYZ tiles, so that positions and tiles line up: x and y in [0, 1] across
  // the square world, y southwards; a tile z/tx/ty covers [tx, tx + 1) / 2^z and likewise y.

  function mercX(lon) {
    return (lon + 180) / 360;
  }

  function mercY(lat) {
    const phi = (Math.min(Math.max(lat, -MERCATOR_MAX_LAT), MERCATOR_MAX_LAT) * Math.PI) / 180;
    return (1 - Math.log(Math.tan(Math.PI / 4 + phi / 2)) / Math.PI) / 2;
  }

  function latOfY(y) {
    return (Math.atan(Math.sinh(Math.PI * (1 - 2 * y))) * 180) / Math.PI;
  }

  // Ground metres per Mercator unit at latitude `lat` (the projection stretches by 1/cos).
  function metresPerUnit(lat) {
    return EARTH_CIRCUMFERENCE_M * Math.max(Math.cos((lat * Math.PI) / 180), 1e-6);
  }

  function clampWorldPx(k) {
    return Math.min(Math.max(k, WORLD_PX_MIN), WORLD_PX_MAX);
  }

  // The user's view, fitted once when the first positions arrive and then left where the
  // user zooms and pans it; a followed participant is kept at its centre.
  function currentView(w, h) {
    if (state.view === null) {
      state.view = fitCentre(w, h);
      if (state.view === null) return null;
    }
    if (state.following && state.selected !== null) {
      const d = state.devices.get(state.selected);
      if (d) {
        const p = d.trail[d.trail.length - 1];
        state.view.x = p.x;
        state.view.y = p.y;
      }
    }
    return project(state.view, w, h);
  }

  // Screen x = p.x * k + bx, y = p.y * k + by: two multiply-adds per point in the hot loops.
  function project(c, w, h) {
    const lat = latOfY(c.y);
    return {
      x: c.x,
      y: c.y,
      k: c.k,
      w,
      h,
      bx: w / 2 - c.x * c.k,
      by: h / 2 - c.y * c.k,
      // Pixels per ground metre at the centre: the scale bar's and the grid's.
      s: c.k / metresPerUnit(lat),
    };
  }

  // The centre and scale that show every point held; null when there is none.
  function fitCentre(w, h) {
    let minX = Infinity;
    let maxX = -Infinity;
    let minY = Infinity;
    let maxY = -Infinity;
    for (const d of state.devices.values()) {
      for (const p of d.trail) {
        if (p.x < minX) minX = p.x;
        if (p.x > maxX) maxX = p.x;
        if (p.y < minY) minY = p.y;
        if (p.y > maxY) maxY = p.y;
      }
    }
    if (minX === Infinity) return null;
    const x = (minX + maxX) / 2;
    const y = (minY + maxY) / 2;
    // Mercator is conformal: around one place a unit is as long east-west as north-south.
    const minSpan = MIN_SPAN_M / metresPerUnit(latOfY(y));
    const spanX = Math.max(maxX - minX, minSpan) * (1 + 2 * PADDING);
    const spanY = Math.max(maxY - minY, minSpan) * (1 + 2 * PADDING);
    return { x, y, k: clampWorldPx(Math.min(w / spanX, h / spanY)) };
  }

  // 1, 2 or 5 times a power of ten, at least `m` metres.
  function niceMetres(m) {
    const p = Math.pow(10, Math.floor(Math.log10(m)));
    for (const k of [1, 2, 5]) if (k * p >= m) return k * p;
    return 10 * p;
  }

  function formatMetres(m) {
    return m >= 1000 ? `${m / 1000} km` : `${m} m`;
  }

  function drawGrid(v, step, w, h) {
    // Lines on whole multiples of `step` (metres at the centre's latitude), so they stay put
    // while the view pans east-west; north-south the metre changes length, and they drift.
    const u = (step * v.s) / v.k; // the step in Mercator units
    ctx.beginPath();
    for (let g = Math.ceil((v.x - w / 2 / v.k) / u) * u; ; g += u) {
      const x = Math.round(g * v.k + v.bx) + 0.5;
      if (x > w) break;
      ctx.moveTo(x, 0);
      ctx.lineTo(x, h);
    }
    for (let g = Math.ceil((v.y - h / 2 / v.k) / u) * u; ; g += u) {
      const y = Math.round(g * v.k + v.by) + 0.5;
      if (y > h) break;
      ctx.moveTo(0, y);
      ctx.lineTo(w, y);
    }
    ctx.strokeStyle = "rgba(28, 36, 48, 0.07)";
    ctx.lineWidth = 1;
    ctx.stroke();
  }

  // ---- tiles (only with a tile layer) ----------------------------------------------------------

  const tileCache = new Map(); // "z/x/y" -> { img, ok: null while loading, then true or false }
  const tileStats = { zoom: null, requested: 0, loaded: 0, failed: 0 };

  function tileUrl(z, x, y) {
    return tileLayer.template
      .replaceAll("{z}", String(z))
      .replaceAll("{x}", String(x))
      .replaceAll("{y}", String(y));
  }

  // The tile z/x/y, requested when `load` and not held yet; the Map's order is its recency.
  function tile(z, x, y, load) {
    const key = `${z}/${x}/${y}`;
    let t = tileCache.get(key);
    if (t) {
      tileCache.delete(key);
      tileCache.set(key, t);
      return t;
    }
    if (!load) return null;
    const img = new Image();
    t = { img, ok: null };
    img.decoding = "async";
    img.onload = () => {
      t.ok = true;
      tileStats.loaded += 1;
      requestDraw();
    };
    img.onerror = () => {
      // Not retried while it is held: a missing tile stays blank instead of being hammered.
      t.ok = false;
      tileStats.failed += 1;
    };
    img.src = tileUrl(z, x, y);
    tileStats.requested += 1;
    tileCache.set(key, t);
    while (tileCache.size > TILE_CACHE_MAX) {
      const [oldest, old] = tileCache.entries().next().value;
      old.img.onload = old.img.onerror = null;
      tileCache.delete(oldest);
    }
    return t;
  }

  function drawTiles(v, w, h) {
    const z = Math.min(TILE_MAX_ZOOM, Math.max(0, Math.round(Math.log2(v.k / TILE_PX))));
    const n = 2 ** z;
    const size = v.k / n; // a tile's width on screen
    tileStats.zoom = z;
    const x0 = Math.floor((v.x - w / 2 / v.k) * n);
    const x1 = Math.floor((v.x + w / 2 / v.k) * n);
    const y0 = Math.max(0, Math.floor((v.y - h / 2 / v.k) * n));
    const y1 = Math.min(n - 1, Math.floor((v.y + h / 2 / v.k) * n));
    ctx.imageSmoothingEnabled = true;
    for (let ty = y0; ty <= y1; ty++) {
      for (let tx = x0; tx <= x1; tx++) {
        // Edges rounded to whole pixels from the same formula, so neighbours share them
        // without seams.
        const left = Math.round(tx * size + v.bx);
        const top = Math.round(ty * size + v.by);
        const width = Math.round((tx + 1) * size + v.bx) - left;
        const height = Math.round((ty + 1) * size + v.by) - top;
        const wx = ((tx % n) + n) % n; // across the antimeridian the world repeats
        drawTile(z, wx, ty, left, top, width, height);
      }
    }
  }

  function drawTile(z, x, y, left, top, width, height) {
    const t = tile(z, x, y, true);
    if (t.ok) {
      ctx.drawImage(t.img, left, top, width, height);
      return;
    }
    // Still loading (or failed): the part of a coarser tile already held, stretched.
    for (let d = 1; d <= TILE_FALLBACK_LEVELS && d <= z; d++) {
      const parent = tile(z - d, x >> d, y >> d, false);
      if (!parent || !parent.ok) continue;
      const sub = parent.img.naturalWidth / 2 ** d;
      const sx = (x - ((x >> d) << d)) * sub;
      const sy = (y - ((y >> d) << d)) * sub;
      ctx.drawImage(parent.img, sx, sy, sub, sub, left, top, width, height);
      return;
    }
  }

  function drawTrails(v) {
    ctx.lineWidth = 1.5;
    ctx.lineJoin = "round";
    ctx.lineCap = "round";
    ctx.globalAlpha = tileLayer ? 0.75 : 0.5;
    for (const d of state.devices.values()) {
      const t = d.trail;
      if (t.length < 2) continue;
      ctx.beginPath();
      ctx.moveTo(t[0].x * v.k + v.bx, t[0].y * v.k + v.by);
      for (let i = 1; i < t.length; i++) ctx.lineTo(t[i].x * v.k + v.bx, t[i].y * v.k + v.by);
      ctx.strokeStyle = d.color;
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
  }

  function drawDots(v) {
    const r = state.devices.size > 300 ? 2.5 : 4;
    ctx.lineWidth = 1;
    ctx.strokeStyle = "#ffffff";
    for (const [id, d] of state.devices) {
      const p = d.trail[d.trail.length - 1];
      const x = p.x * v.k + v.bx;
      const y = p.y * v.k + v.by;
      dotIds.push(id);
      dotPts.push(p);
      dotX.push(x);
      dotY.push(y);
      const big = id === hovered || id === state.selected;
      ctx.beginPath();
      ctx.arc(x, y, big ? r + 2 : r, 0, 2 * Math.PI);
      ctx.fillStyle = d.color;
      ctx.fill();
      ctx.stroke();
      if (id === state.selected) {
        ctx.beginPath();
        ctx.arc(x, y, r + 6, 0, 2 * Math.PI);
        ctx.strokeStyle = "#1c2430";
        ctx.stroke();
        ctx.strokeStyle = "#ffffff";
      }
    }
  }

  function drawLabels() {
    const all = dotIds.length <= LABEL_MAX_DEVICES;
    if (!all && hovered === null && state.selected === null) return;
    ctx.font = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
    ctx.textBaseline = "bottom";
    ctx.lineJoin = "round";
    ctx.lineWidth = 3;
    ctx.strokeStyle = "rgba(255, 255, 255, 0.9)";
    ctx.fillStyle = "#1c2430";
    for (let i = 0; i < dotIds.length; i++) {
      const id = dotIds[i];
      if (!all && id !== hovered && id !== state.selected) continue;
      const text = labelOf(id);
      // A white halo keeps the text readable over trails and grid.
      ctx.strokeText(text, dotX[i] + 6, dotY[i] - 4);
      ctx.fillText(text, dotX[i] + 6, dotY[i] - 4);
    }
  }

  function drawScaleBar(v, step, h) {
    const len = step * v.s;
    const x = 16;
    const y = h - 18;
    ctx.fillStyle = "rgba(255, 255, 255, 0.85)";
    ctx.fillRect(x - 8, y - 22, len + 16, 30);
    ctx.beginPath();
    ctx.moveTo(x, y - 5);
    ctx.lineTo(x, y);
    ctx.lineTo(x + len, y);
    ctx.lineTo(x + len, y - 5);
    ctx.strokeStyle = "#1c2430";
    ctx.lineWidth = 1.5;
    ctx.lineJoin = "miter";
    ctx.stroke();
    ctx.font = "11px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
    ctx.textBaseline = "bottom";
    ctx.fillStyle = "#1c2430";
    ctx.fillText(formatMetres(step), x + 3, y - 6);
  }

  function drawHint(w, h) {
    let text = "Choose an event and connect";
    if (state.connection === "connecting") text = "Connecting…";
    else if (state.connection === "open" || state.connection === "subscribed") text = "No positions yet";
    else if (state.connection === "closed") text = "Not connected";
    ctx.font = "15px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillStyle = "#98a2b3";
    ctx.fillText(text, w / 2, h / 2);
    ctx.textAlign = "start";
  }

  // ---- zoom, pan, select ----------------------------------------------------------------------

  let drag = null; // {x, y, lat, lon, moved} while a pointer is down on the map

  function pointerAt(ev) {
    const rect = ui.canvas.getBoundingClientRect();
    return { x: ev.clientX - rect.left, y: ev.clientY - rect.top };
  }

  function onWheel(ev) {
    if (!lastView || !state.view) return;
    ev.preventDefault();
    const factor = Math.exp(-ev.deltaY * 0.0015);
    const v = state.view;
    const k = clampWorldPx(v.k * factor);
    if (state.following && state.selected !== null) {
      v.k = k; // around the followed participant
    } else {
      // Around the pointer: the place under it stays under it. From the view itself, not the
      // last frame, since several wheel events can come between two frames.
      const { x, y } = pointerAt(ev);
      const dx = x - ui.canvas.clientWidth / 2;
      const dy = y - ui.canvas.clientHeight / 2;
      state.view = {
        x: v.x + dx / v.k - dx / k,
        y: v.y + dy / v.k - dy / k,
        k,
      };
    }
    requestDraw();
  }

  function onPointerDown(ev) {
    if (!state.view) return;
    const { x, y } = pointerAt(ev);
    drag = { x, y, viewX: state.view.x, viewY: state.view.y, moved: false };
    ui.canvas.setPointerCapture(ev.pointerId);
  }

  function onPointerUp(ev) {
    if (!drag) return;
    const wasClick = !drag.moved;
    drag = null;
    ui.canvas.classList.remove("dragging");
    if (wasClick) {
      const { x, y } = pointerAt(ev);
      select(nearestDot(x, y), true);
    }
  }

  function nearestDot(px, py) {
    let best = null;
    let bestD = 10 * 10; // pick radius, squared
    for (let i = 0; i < dotIds.length; i++) {
      const dx = dotX[i] - px;
      const dy = dotY[i] - py;
      const d = dx * dx + dy * dy;
      if (d < bestD) {
        bestD = d;
        best = dotIds[i];
      }
    }
    return best;
  }

  // Selects a participant (null: none); `follow` keeps it at the centre until the user pans.
  function select(id, follow) {
    state.selected = id;
    state.following = id !== null && follow;
    renderList();
    requestDraw();
  }

  function onPointerMove(ev) {
    const rect = ui.canvas.getBoundingClientRect();
    const px = ev.clientX - rect.left;
    const py = ev.clientY - rect.top;
    if (drag && lastView) {
      const dx = px - drag.x;
      const dy = py - drag.y;
      if (!drag.moved && dx * dx + dy * dy < CLICK_SLOP_PX * CLICK_SLOP_PX) return;
      drag.moved = true;
      ui.canvas.classList.add("dragging");
      // Panning takes the view over from a followed participant.
      state.following = false;
      state.view.x = drag.viewX - dx / state.view.k;
      state.view.y = drag.viewY - dy / state.view.k;
      requestDraw();
      return;
    }
    let best = null;
    let bestD = 10 * 10; // pick radius, squared
    for (let i = 0; i < dotIds.length; i++) {
      const dx = dotX[i] - px;
      const dy = dotY[i] - py;
      const d = dx * dx + dy * dy;
      if (d < bestD) {
        bestD = d;
        best = dotIds[i];
      }
    }
    if (best !== hovered) {
      hovered = best;
      requestDraw();
    }
  }

  // ---- event list and form -------------------------------------------------------------------

  async function loadEvents() {
    let events;
    try {
      const res = await fetch("/events", { headers: { Accept: "application/json" } });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      events = await res.json();
      if (!Array.isArray(events)) throw new Error("not a list");
    } catch (e) {
      ui.select.options[0].textContent = `event list unavailable (${e.message || e})`;
      return;
    }
    const options = [];
    for (const ev of events) {
      if (!ev || typeof ev.id !== "string") continue;
      const name = typeof ev.name === "string" && ev.name ? ev.name : ev.id;
      options.push(new Option(name, ev.id));
    }
    options.push(new Option("other (paste id)", OTHER));
    ui.select.replaceChildren(...options);
    // Offer the first public event ready to connect, unless an id was already given or typed.
    if (!ui.eventId.value.trim() && options.length > 1) ui.eventId.value = options[0].value;
    syncSelect();
  }

  // The select shows the listed event whose id is in the text field, or "other".
  function syncSelect() {
    const id = ui.eventId.value.trim().toLowerCase();
    const match = Array.from(ui.select.options).find(
      (o) => o.value !== OTHER && o.value !== "" && o.value.toLowerCase() === id,
    );
    ui.select.value = match ? match.value : OTHER;
  }

  ui.select.addEventListener("change", () => {
    if (ui.select.value === OTHER) {
      ui.eventId.value = "";
      ui.eventId.focus();
    } else {
      ui.eventId.value = ui.select.value;
    }
  });
  ui.eventId.addEventListener("input", syncSelect);
  ui.form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    connect();
  });
  ui.disconnect.addEventListener("click", disconnect);
  ui.replay.addEventListener("submit", (ev) => {
    ev.preventDefault();
    startReplay();
  });
  ui.replayPause.addEventListener("click", pauseReplay);
  ui.replaySeek.addEventListener("change", seekReplay);
  ui.replayLive.addEventListener("click", backToLive);
  ui.canvas.addEventListener("pointermove", onPointerMove);
  ui.canvas.addEventListener("pointerdown", onPointerDown);
  ui.canvas.addEventListener("pointerup", onPointerUp);
  ui.canvas.addEventListener("pointercancel", () => {
    drag = null;
    ui.canvas.classList.remove("dragging");
  });
  ui.canvas.addEventListener("wheel", onWheel, { passive: false });
  ui.fit.addEventListener("click", () => {
    state.view = null;
    state.following = false;
    requestDraw();
  });
  ui.list.addEventListener("click", (ev) => {
    const li = ev.target instanceof Element ? ev.target.closest("li[data-device]") : null;
    if (!li) return;
    const id = li.dataset.device;
    // A second click on the followed participant lets it go.
    if (id === state.selected && state.following) select(null, false);
    else select(id, true);
  });
  ui.search.addEventListener("input", renderList);
  ui.sort.addEventListener("change", renderList);
  ui.canvas.addEventListener("pointerleave", () => {
    if (hovered !== null) {
      hovered = null;
      requestDraw();
    }
  });
  // Window resize also covers devicePixelRatio changes (browser zoom), which ResizeObserver may not.
  window.addEventListener("resize", requestDraw);
  if (typeof ResizeObserver === "function") new ResizeObserver(requestDraw).observe(ui.canvas);

  function viewOf(v) {
    return { lat: latOfY(v.y), lon: v.x * 360 - 180, s: v.s, worldPx: v.k };
  }

  // For automated browser tests: plain data only, so it survives serialisation.
  window.processorMap = Object.freeze({
    // Drops the socket as a network failure would (the page reconnects and resumes).
    dropConnection() {
      if (ws === null) return false;
      const sock = ws;
      sock.onmessage = sock.onerror = sock.onclose = null;
      sock.close(1000);
      onClosed(1006, true);
      return true;
    },
    snapshot() {
      const devices = {};
      for (const [id, d] of state.devices) {
        const p = d.trail[d.trail.length - 1];
        devices[id] = {
          lat: p.lat,
          lon: p.lon,
          ts: p.ts,
          points: d.trail.length,
          times: d.trail.map((t) => t.ts),
          label: labelOf(id),
          speed: d.speed,
          course: d.course,
        };
      }
      const dots = {};
      for (let j = 0; j < dotIds.length; j++) {
        dots[dotIds[j]] = { x: dotX[j], y: dotY[j], lat: dotPts[j].lat, lon: dotPts[j].lon };
      }
      // Where the selected participant was drawn, against the canvas' centre.
      let selectedOnScreen = null;
      const i = state.selected === null ? -1 : dotIds.indexOf(state.selected);
      if (i >= 0) {
        selectedOnScreen = {
          x: dotX[i],
          y: dotY[i],
          centerX: ui.canvas.clientWidth / 2,
          centerY: ui.canvas.clientHeight / 2,
        };
      }
      return {
        connection: state.connection,
        topic: state.topic,
        subscribed: state.subscribed,
        snapshots: state.snapshots,
        positions: state.positions,
        resumes: state.resumes,
        replay: replay === null ? null : { ...replay },
        truncatedResumes: state.truncatedResumes,
        deviceCount: state.devices.size,
        devices,
        lastError: state.lastError
          ? { code: state.lastError.code, message: state.lastError.message }
          : null,
        closeCode: state.closeCode,
        access: state.access,
        eventName: state.eventName,
        selected: state.selected,
        following: state.following,
        selectedOnScreen,
        listed: state.listed.slice(),
        view: state.view ? viewOf(project(state.view, 0, 0)) : null,
        // The last frame as drawn: its view and every dot with the position it stands for, so
        // that a test can check the projection independently of when positions arrive.
        frame: lastView
          ? { ...viewOf(lastView), width: lastView.w, height: lastView.h, dots }
          : null,
        tiles: tileLayer
          ? { template: tileLayer.template, attribution: tileLayer.attribution, ...tileStats }
          : null,
      };
    },
  });

  const params = new URLSearchParams(location.search);
  const eventParam = (params.get("event") || "").trim();
  const tokenParam = (params.get("token") || "").trim();
  if (eventParam) ui.eventId.value = eventParam;
  if (tokenParam) {
    ui.token.value = tokenParam;
    // Out of the address bar, the history and the Referer: the field holds it from now on.
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
  }
  syncSelect();
  setInterval(tick, 250);
  tick();
  requestDraw();
  loadEvents();
  if (eventParam) connect();
})();
