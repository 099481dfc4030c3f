"use strict";

// Live map of one event: subscribes to `event:<uuid>` on /live (contract section 5) and draws
// every device's latest position and short trail on a canvas, without map tiles.
(() => {
  const TRAIL_MAX = 30;
  const LABEL_MAX_DEVICES = 20;
  // Closes that are not the client's fault; everything else (1008, 1009, ...) would repeat.
  const RECONNECT_CODES = new Set([1001, 1006, 1011, 1013]);
  const BACKOFF_MIN_MS = 1000;
  const BACKOFF_MAX_MS = 10000;
  // A socket that never opens is almost always a 401 (bad token), which retrying cannot fix.
  const MAX_NEVER_OPENED = 3;
  const METRES_PER_DEGREE = (6371008.8 * Math.PI) / 180;
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
  };
  const ctx = ui.canvas.getContext("2d");

  // What window.processorMap.snapshot() reports.
  const state = {
    connection: "idle",
    topic: null,
    subscribed: false,
    snapshots: 0,
    positions: 0,
    devices: new Map(), // deviceId -> { trail: [{lat, lon, ts}], color }
    lastError: null,
    closeCode: null,
  };

  let ws = null;
  let token = "";
  let wantOpen = false; // the user asked for a connection and has not cancelled it
  let reconnectTimer = 0;
  let backoff = BACKOFF_MIN_MS;
  let neverOpened = 0;
  let lastDataAt = 0; // performance.now() of the last snapshot or position, 0 before any
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
    state.topic = "event:" + id;
    state.subscribed = false;
    state.snapshots = 0;
    state.positions = 0;
    state.devices.clear();
    state.lastError = null;
    state.closeCode = null;
    token = ui.token.value.trim();
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
      sock.send(JSON.stringify({ type: "subscribe", topic: state.topic }));
    };
    sock.onmessage = (ev) => onFrame(ev.data);
    // The browser tells nothing useful on error (not even a 401); the close event follows.
    sock.onerror = () => {};
    sock.onclose = (ev) => onClosed(ev.code, opened);
  }

  function onClosed(code, opened) {
    ws = null;
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
    const mine =
      typeof msg.topic === "string" &&
      state.topic !== null &&
      msg.topic.toLowerCase() === state.topic.toLowerCase();
    switch (msg.type) {
      case "subscribed":
        if (mine) {
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
        if (mine && Array.isArray(msg.positions)) applySnapshot(msg.positions);
        break;
      case "position":
        state.positions += 1;
        lastDataAt = performance.now();
        if (mine) applyPosition(msg);
        break;
      case "error":
        setError(String(msg.code || "error"), String(msg.message || ""));
        break;
      default:
        break; // pong and anything newer
    }
  }

  // ---- devices -------------------------------------------------------------------------------

  function toPoint(p) {
    if (!p || typeof p !== "object") return null;
    const id = p.deviceId;
    if ((typeof id !== "string" && typeof id !== "number") || id === "") return null;
    const { lat, lon, ts } = p;
    if (!Number.isFinite(lat) || !Number.isFinite(lon) || !Number.isFinite(ts)) return null;
    if (Math.abs(lat) > 90 || Math.abs(lon) > 180) return null;
    return { id: String(id), pt: { lat, lon, ts } };
  }

  function applySnapshot(positions) {
    state.devices.clear();
    for (const p of positions) {
      const v = toPoint(p);
      if (v) state.devices.set(v.id, { trail: [v.pt], color: colorFor(v.id) });
    }
    requestDraw();
  }

  function applyPosition(msg) {
    const v = toPoint(msg);
    if (!v) return;
    const d = state.devices.get(v.id);
    if (!d) {
      state.devices.set(v.id, { trail: [v.pt], color: colorFor(v.id) });
    } else {
      // The server promises ts never goes backwards; a duplicate or older fix is dropped anyway.
      if (!(v.pt.ts > d.trail[d.trail.length - 1].ts)) return;
      d.trail.push(v.pt);
      if (d.trail.length > TRAIL_MAX) d.trail.shift();
    }
    requestDraw();
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
  }

  // ---- drawing -------------------------------------------------------------------------------

  let drawPending = false;
  let hovered = null; // deviceId under the pointer
  // Screen positions of the dots from the last draw, for hovering.
  const dotIds = [];
  const dotX = [];
  const dotY = [];

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
    dotIds.length = dotX.length = dotY.length = 0;
    if (w === 0 || h === 0) return;

    const view = fitView(w, h);
    if (!view) {
      drawHint(w, h);
      return;
    }
    const step = niceMetres(90 / view.s);
    drawGrid(view, step, w, h);
    drawTrails(view);
    drawDots(view);
    drawLabels();
    drawScaleBar(view, step, h);
  }

  // Equirectangular projection fitted to the bounding box of every point held; longitude is
  // shrunk by cos(latitude) so that a metre is as long east-west as north-south.
  function fitView(w, h) {
    let minLat = Infinity;
    let maxLat = -Infinity;
    let minLon = Infinity;
    let maxLon = -Infinity;
    for (const d of state.devices.values()) {
      for (const p of d.trail) {
        if (p.lat < minLat) minLat = p.lat;
        if (p.lat > maxLat) maxLat = p.lat;
        if (p.lon < minLon) minLon = p.lon;
        if (p.lon > maxLon) maxLon = p.lon;
      }
    }
    if (minLat === Infinity) return null;
    const midLat = (minLat + maxLat) / 2;
    const midLon = (minLon + maxLon) / 2;
    const kx = Math.max(Math.cos((midLat * Math.PI) / 180), 0.01);
    const spanX = Math.max((maxLon - minLon) * kx * METRES_PER_DEGREE, MIN_SPAN_M) * (1 + 2 * PADDING);
    const spanY = Math.max((maxLat - minLat) * METRES_PER_DEGREE, MIN_SPAN_M) * (1 + 2 * PADDING);
    const s = Math.min(w / spanX, h / spanY); // pixels per metre
    // Screen x = lon * ax + bx, y = lat * ay + by: two multiply-adds per point in the hot loops.
    const ax = kx * METRES_PER_DEGREE * s;
    const ay = -METRES_PER_DEGREE * s;
    return {
      s,
      ax,
      bx: w / 2 - midLon * ax,
      ay,
      by: h / 2 - midLat * ay,
      // Metres east of lon 0 (at this latitude) and north of the equator at the screen centre.
      cxm: midLon * kx * METRES_PER_DEGREE,
      cym: midLat * METRES_PER_DEGREE,
    };
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
    // Lines on whole multiples of `step`, so they stay put while the view only pans a little.
    ctx.beginPath();
    const left = v.cxm - w / 2 / v.s;
    for (let g = Math.ceil(left / step) * step; ; g += step) {
      const x = Math.round(w / 2 + (g - v.cxm) * v.s) + 0.5;
      if (x > w) break;
      ctx.moveTo(x, 0);
      ctx.lineTo(x, h);
    }
    const bottom = v.cym - h / 2 / v.s;
    for (let g = Math.ceil(bottom / step) * step; ; g += step) {
      const y = Math.round(h / 2 - (g - v.cym) * v.s) + 0.5;
      if (y < 0) break;
      ctx.moveTo(0, y);
      ctx.lineTo(w, y);
    }
    ctx.strokeStyle = "rgba(28, 36, 48, 0.07)";
    ctx.lineWidth = 1;
    ctx.stroke();
  }

  function drawTrails(v) {
    ctx.lineWidth = 1.5;
    ctx.lineJoin = "round";
    ctx.lineCap = "round";
    ctx.globalAlpha = 0.5;
    for (const d of state.devices.values()) {
      const t = d.trail;
      if (t.length < 2) continue;
      ctx.beginPath();
      ctx.moveTo(t[0].lon * v.ax + v.bx, t[0].lat * v.ay + v.by);
      for (let i = 1; i < t.length; i++) ctx.lineTo(t[i].lon * v.ax + v.bx, t[i].lat * v.ay + v.by);
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
      const x = p.lon * v.ax + v.bx;
      const y = p.lat * v.ay + v.by;
      dotIds.push(id);
      dotX.push(x);
      dotY.push(y);
      ctx.beginPath();
      ctx.arc(x, y, id === hovered ? r + 2 : r, 0, 2 * Math.PI);
      ctx.fillStyle = d.color;
      ctx.fill();
      ctx.stroke();
    }
  }

  function drawLabels() {
    const all = dotIds.length <= LABEL_MAX_DEVICES;
    if (!all && hovered === null) return;
    ctx.font = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
    ctx.textBaseline = "bottom";
    ctx.lineJoin = "round";
    ctx.lineWidth = 3;
    ctx.strokeStyle = "rgba(255, 255, 255, 0.9)";
    ctx.fillStyle = "#1c2430";
    for (let i = 0; i < dotIds.length; i++) {
      if (!all && dotIds[i] !== hovered) continue;
      // A white halo keeps the text readable over trails and grid.
      ctx.strokeText(dotIds[i], dotX[i] + 6, dotY[i] - 4);
      ctx.fillText(dotIds[i], dotX[i] + 6, dotY[i] - 4);
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

  function onPointerMove(ev) {
    const rect = ui.canvas.getBoundingClientRect();
    const px = ev.clientX - rect.left;
    const py = ev.clientY - rect.top;
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
  ui.canvas.addEventListener("pointermove", onPointerMove);
  ui.canvas.addEventListener("pointerleave", () => {
    if (hovered !== null) {
      hovered = null;
      requestDraw();
    }
  });
  // Window resize also covers devicePixelRatio changes (browser zoom), which ResizeObserver may not.
  window.addEventListener("resize", requestDraw);
  if (typeof ResizeObserver === "function") new ResizeObserver(requestDraw).observe(ui.canvas);

  // For automated browser tests: plain data only, so it survives serialisation.
  window.processorMap = Object.freeze({
    snapshot() {
      const devices = {};
      for (const [id, d] of state.devices) {
        const p = d.trail[d.trail.length - 1];
        devices[id] = { lat: p.lat, lon: p.lon, ts: p.ts, points: d.trail.length };
      }
      return {
        connection: state.connection,
        topic: state.topic,
        subscribed: state.subscribed,
        snapshots: state.snapshots,
        positions: state.positions,
        deviceCount: state.devices.size,
        devices,
        lastError: state.lastError
          ? { code: state.lastError.code, message: state.lastError.message }
          : null,
        closeCode: state.closeCode,
      };
    },
  });

  const params = new URLSearchParams(location.search);
  const eventParam = (params.get("event") || "").trim();
  const tokenParam = (params.get("token") || "").trim();
  if (eventParam) ui.eventId.value = eventParam;
  if (tokenParam) ui.token.value = tokenParam;
  syncSelect();
  setInterval(tick, 250);
  tick();
  requestDraw();
  loadEvents();
  if (eventParam) connect();
})();
