/*
 * sensorpipe dashboard: widgets on a 12-column grid, each fed by a
 * WebSocket subscription to apid's /api/v1/stream; the layout (order,
 * sizes, series) is saved to /api/dashboards/{name} on every change and
 * restored on load. No build step; uPlot is vendored under /web/vendor.
 */
"use strict";
(function () {
  const MAX_POINTS = 2000;      // points kept per chart
  const MAX_ROWS = 60;          // rows kept per list widget
  const SAVE_DELAY_MS = 250;    // debounce of layout saves
  const RETRY_MS = 1000;        // reconnect delay of a stream
  const FORECAST_MS = 3000;     // least time between forecast questions
  const GAP = 12, ROW_PX = 80;  // grid geometry, as in app.css

  const $ = (id) => document.getElementById(id);
  const grid = $("grid");
  const params = new URLSearchParams(location.search);
  let dashName = params.get("d") || "default";
  let layout = { version: 1, widgets: [] };
  const runtime = new Map();    // widget id -> { el, stream, ... }
  const streams = new Set();
  let saveTimer = null;

  // --- helpers ----------------------------------------------------------
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k);
    return e;
  }
  const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));
  const when = (ts) => new Date(ts).toLocaleString();
  const api = (path, opts) => fetch(path, opts).then(async (r) => {
    const body = r.headers.get("Content-Type")?.startsWith("application/json")
      ? await r.json() : await r.text();
    // Credentials are required and there are none: log in (the session
    // cookie then goes with every request and stream).
    if (r.status === 401) location.href = "/web/login.html";
    if (!r.ok) throw Object.assign(new Error(r.status), { status: r.status, body });
    return body;
  });

  // --- live streams -----------------------------------------------------
  function setConn() {
    const on = [...streams].some((s) => s.ws && s.ws.readyState === 1);
    $("conn").textContent = on ? "live" : "offline";
    $("conn").className = "conn " + (on ? "on" : "off");
  }

  /* A subscription that reconnects; onMsg gets every data message. */
  function openStream(filter, onMsg) {
    const st = { ws: null, closed: false, lastSeq: 0, gaps: 0 };
    const url = (location.protocol === "https:" ? "wss://" : "ws://") +
      location.host + "/api/v1/stream";
    function connect() {
      if (st.closed) return;
      const ws = new WebSocket(url);
      st.ws = ws;
      ws.onopen = () => {
        ws.send(JSON.stringify(Object.assign({ op: "subscribe" }, filter)));
        setConn();
      };
      ws.onmessage = (ev) => {
        const m = JSON.parse(ev.data);
        if (st.lastSeq && m.seq !== st.lastSeq + 1) st.gaps++;
        st.lastSeq = m.seq;
        if (m.type === "error") console.warn("stream:", m.error);
        else onMsg(m);
      };
      ws.onclose = () => {
        st.ws = null;
        st.lastSeq = 0;
        setConn();
        if (!st.closed) setTimeout(connect, RETRY_MS);
      };
    }
    st.close = () => { st.closed = true; streams.delete(st); if (st.ws) st.ws.close(); };
    streams.add(st);
    connect();
    return st;
  }

  // --- widgets ------------------------------------------------------------
  const PALETTE = ["#4cc2ff", "#4cd98a", "#c38bff", "#ffd166", "#ff8fab", "#7ee0d6"];

  function chartWidget(w, rt) {
    const lines = new Map();    // series key -> Map(ts ms -> value)
    const marks = new Map();    // "key|ts" -> value of an anomaly
    let plot = null, keys = [], dirty = false;
    let band = [];              // forecast of a one-series chart: {t, value, lower, upper}
    let bandAsked = 0;
    rt.body.classList.add("chart");
    rt.el.dataset.points = "0";
    rt.el.dataset.anomalies = "0";

    function add(key, ts, v) {
      if (!lines.has(key)) lines.set(key, new Map());
      const m = lines.get(key);
      m.set(ts, v);
      if (m.size > MAX_POINTS) m.delete(m.keys().next().value);
      schedule();
    }
    function schedule() {
      if (!dirty) { dirty = true; requestAnimationFrame(draw); }
    }
    function size() {
      return { width: Math.max(120, rt.body.clientWidth - 4),
               height: Math.max(60, rt.body.clientHeight - 34) };
    }
    function draw() {
      dirty = false;
      const ks = [...lines.keys()].sort();
      const xsSet = new Set();
      for (const m of lines.values()) for (const t of m.keys()) xsSet.add(t);
      const xs = [...xsSet].sort((a, b) => a - b).slice(-MAX_POINTS);
      const data = [xs.map((t) => t / 1000)];
      let points = 0;
      for (const k of ks) {
        const m = lines.get(k);
        data.push(xs.map((t) => (m.has(t) ? m.get(t) : null)));
        points += m.size;
      }
      const an = xs.map((t) => {
        for (const k of ks) if (marks.has(k + "|" + t)) return marks.get(k + "|" + t);
        return null;
      });
      data.push(an);
      // The forecast band starts at the last reading and runs ahead of it.
      const fc = ks.length === 1 && band.length ? band.filter((p) => !xs.length || p.t > xs[xs.length - 1]) : [];
      if (fc.length) {
        const last = xs[xs.length - 1], lv = lines.get(ks[0]).get(last);
        for (const p of fc) {
          data[0].push(p.t / 1000);
          for (let i = 1; i < data.length; i++) data[i].push(null);
        }
        const pad = (f, at) => xs.map((t) => (t === last ? at : null)).concat(fc.map(f));
        data.push(pad((p) => p.value, lv), pad((p) => p.upper, lv), pad((p) => p.lower, lv));
      }
      const sig = ks.join("\n") + (fc.length ? "\nforecast" : "");
      if (!plot || sig !== keys.join("\n")) {
        keys = sig.split("\n");
        if (plot) plot.destroy();
        const series = [{}].concat(ks.map((k, i) => ({
          label: k, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: true,
        }))).concat([{
          label: "anomaly", stroke: "#ff5c5c", width: 0,
          points: { show: true, size: 9, fill: "#ff5c5c", stroke: "#ff5c5c" },
        }]);
        const bands = [];
        if (fc.length) {
          const n = series.length;
          series.push({ label: "forecast", stroke: "#ffd166", width: 1.5, dash: [6, 4], spanGaps: true },
                      { label: "upper", stroke: "rgba(255,209,102,.35)", width: 1, spanGaps: true },
                      { label: "lower", stroke: "rgba(255,209,102,.35)", width: 1, spanGaps: true });
          bands.push({ series: [n + 1, n + 2], fill: "rgba(255,209,102,.15)" });
        }
        plot = new uPlot(Object.assign(size(), {
          series, bands,
          axes: [{ stroke: "#8593a3", grid: { stroke: "#26303b" } },
                 { stroke: "#8593a3", grid: { stroke: "#26303b" } }],
          cursor: { drag: { x: true, y: false } },
        }), data, rt.body);
      } else {
        plot.setData(data);
      }
      rt.el.dataset.points = String(points);
      rt.el.dataset.forecast = String(fc.length);
      askForecast(ks, xs);
      rt.el.dataset.anomalies = String(an.filter((v) => v !== null).length);
      rt.meta.textContent = points + " pts";
    }
    /* A one-series chart asks anomalyd for a forecast over a quarter of
     * the span it shows (at most every FORECAST_MS; 404 or not ready
     * draws none). */
    function askForecast(ks, xs) {
      if (ks.length !== 1 || xs.length < 2 || Date.now() - bandAsked < FORECAST_MS) return;
      bandAsked = Date.now();
      const span = Math.max(60, Math.round((xs[xs.length - 1] - xs[0]) / 4000));
      api("/api/v1/forecast/" + encodeURIComponent(ks[0]) + "?horizon=" + span + "s&points=24")
        .then((b) => {
          band = b.ready ? (b.forecast || []).map((p) => ({
            t: Date.parse(p.timestamp), value: p.value, lower: p.lower, upper: p.upper })) : [];
          schedule();
        }).catch(() => { band = []; });
    }
    rt.resize = () => { if (plot) plot.setSize(size()); };
    rt.destroy = () => { if (plot) plot.destroy(); };

    const sel = encodeURIComponent(w.series || "*");
    api("/api/v1/export/" + sel + "?limit=" + MAX_POINTS).then((b) => {
      for (const s of b.series || [])
        for (const p of s.points) add(s.series, Date.parse(p.timestamp), p.value);
    }).catch(() => {});
    rt.stream = openStream({ series: w.series || "*", kinds: ["readings", "anomalies"] }, (m) => {
      for (const it of m.items || []) {
        const ts = Date.parse(it.timestamp);
        if (m.type === "anomalies") {
          marks.set(it.series + "|" + ts, it.value);
          add(it.series, ts, it.value);
        } else if (m.type === "readings") {
          add(it.series, ts, it.value);
        }
      }
    });
  }

  function listWidget(w, rt, kind) {
    const ul = el("ul", { class: "list" });
    const rows = new Map();     // key -> li, newest first
    rt.body.append(ul);
    rt.el.dataset.rows = "0";
    function empty() {
      if (!rows.size && !ul.firstChild)
        ul.append(el("li", { class: "empty" }, kind === "alerts" ? "no alerts" : "no anomalies"));
    }
    function put(key, li) {
      const old = rows.get(key);
      if (old) old.remove();
      ul.querySelector(".empty")?.remove();
      rows.set(key, li);
      ul.prepend(li);
      while (ul.children.length > MAX_ROWS) {
        const last = ul.lastChild;
        for (const [k, v] of rows) if (v === last) rows.delete(k);
        last.remove();
      }
      rt.el.dataset.rows = String(ul.querySelectorAll("li:not(.empty)").length);
      rt.meta.textContent = rt.el.dataset.rows;
    }
    function alertRow(a) {
      const state = a.state || "firing";
      const li = el("li", { "data-state": state },
        el("span", { class: "badge " + (a.severity || "") }, a.severity || "-"),
        el("span", { class: "badge " + state }, state),
        el("span", {}, a.rule + " · " + a.series),
        el("span", { class: "when" }, when(Date.parse(a.timestamp || a.updated || a.since))));
      if (a.id && state === "firing") {
        li.append(el("button", { class: "ack", title: "acknowledge", onclick: () => {
          api("/api/alerts/" + a.id + "/ack", {
            method: "POST", headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ by: "dashboard" }),
          }).then((b) => put(b.rule + "|" + b.series, alertRow(b))).catch(() => {});
        } }, "ack"));
      }
      return li;
    }
    // Live alerts carry no id; the list from alertd does, for "ack".
    let refetch = null;
    function reload() {
      api("/api/alerts").then((b) => {
        for (const a of b.alerts || []) put(a.rule + "|" + a.series, alertRow(a));
      }).catch(() => {});
    }
    function anomalyRow(a) {
      // anomalyd's novelty alarm (a deviation beyond any the series had)
      // gets a badge of its own: alertd's alarm(metric) fires on it.
      return el("li", a.alarm ? { class: "alarm" } : {},
        el("span", { class: "badge critical" }, "score " + a.score.toFixed(2)),
        a.alarm ? el("span", { class: "badge firing" }, "alarm") : "",
        el("span", {}, a.series + " = " + a.value + " (" + a.method + ")"),
        el("span", { class: "when" }, when(Date.parse(a.timestamp))));
    }
    empty();
    const filter = { series: w.series || "*", kinds: [kind] };
    if (kind === "alerts") reload();
    // The recent anomalies (as the stream would have shown them) first.
    else api("/api/v1/anomalies/" + encodeURIComponent(w.series || "*") + "?min_score=0.5&limit=" + MAX_ROWS)
      .then((b) => { for (const a of b.anomalies || []) put(a.series + "|" + a.timestamp, anomalyRow(a)); })
      .catch(() => {});
    rt.stream = openStream(filter, (m) => {
      for (const it of m.items || []) {
        if (m.type === "alerts") {
          put(it.rule + "|" + it.series, alertRow(it));
          clearTimeout(refetch);
          refetch = setTimeout(reload, 300);
        }
        else if (m.type === "anomalies") put(it.series + "|" + it.timestamp, anomalyRow(it));
      }
    });
  }

  function title(w) {
    if (window.spViews && spViews.titles[w.type]) return spViews.titles[w.type];
    if (w.type === "chart") return !w.series || w.series === "*" ? "All series" : w.series;
    const t = w.type === "alerts" ? "Alerts" : "Anomalies";
    return w.series && w.series !== "*" ? t + " · " + w.series : t;
  }

  function place(w, e) {
    e.style.gridColumn = "span " + w.w;
    e.style.gridRow = "span " + w.h;
  }

  function mount(w) {
    const meta = el("span", { class: "meta" });
    const head = el("div", { class: "whead", draggable: "true" },
      el("span", { class: "title" }, title(w)), meta,
      el("button", { class: "remove", title: "remove widget", onclick: () => remove(w.id) }, "×"));
    const body = el("div", { class: "wbody" });
    const grip = el("div", { class: "resize", title: "drag to resize" });
    const e = el("section", { class: "widget", "data-id": w.id, "data-type": w.type }, head, body, grip);
    place(w, e);
    const rt = { el: e, body, meta, stream: null, resize: null, destroy: null };
    runtime.set(w.id, rt);
    grid.append(e);
    dragHandlers(w, e, head);
    resizeHandlers(w, e, grip);
    if (w.type === "chart") chartWidget(w, rt);
    else if (window.spViews && spViews[w.type]) spViews[w.type](w, rt, { el, api, when, openStream }, save);
    else listWidget(w, rt, w.type);
    new ResizeObserver(() => rt.resize && rt.resize()).observe(body);
  }

  function remove(id) {
    const rt = runtime.get(id);
    if (rt) {
      if (rt.stream) rt.stream.close();
      if (rt.destroy) rt.destroy();
      rt.el.remove();
      runtime.delete(id);
    }
    layout.widgets = layout.widgets.filter((w) => w.id !== id);
    save();
  }

  // --- drag and drop, resize ------------------------------------------------
  let dragId = null;
  function dragHandlers(w, e, head) {
    head.addEventListener("dragstart", (ev) => {
      dragId = w.id;
      ev.dataTransfer.effectAllowed = "move";
      ev.dataTransfer.setData("text/plain", w.id);
      e.classList.add("dragging");
    });
    head.addEventListener("dragend", () => {
      dragId = null;
      e.classList.remove("dragging");
      grid.querySelectorAll(".drag-over").forEach((x) => x.classList.remove("drag-over"));
    });
    e.addEventListener("dragover", (ev) => {
      if (!dragId || dragId === w.id) return;
      ev.preventDefault();
      e.classList.add("drag-over");
    });
    e.addEventListener("dragleave", () => e.classList.remove("drag-over"));
    e.addEventListener("drop", (ev) => {
      ev.preventDefault();
      e.classList.remove("drag-over");
      const from = layout.widgets.findIndex((x) => x.id === (dragId || ev.dataTransfer.getData("text/plain")));
      const to = layout.widgets.findIndex((x) => x.id === w.id);
      if (from < 0 || to < 0 || from === to) return;
      const [moved] = layout.widgets.splice(from, 1);
      layout.widgets.splice(to, 0, moved);
      for (const x of layout.widgets) grid.append(runtime.get(x.id).el);
      save();
    });
  }

  function resizeHandlers(w, e, grip) {
    grip.addEventListener("pointerdown", (ev) => {
      ev.preventDefault();
      const x0 = ev.clientX, y0 = ev.clientY, w0 = w.w, h0 = w.h;
      const col = (grid.clientWidth - 2 * 16 - 11 * GAP) / 12 + GAP;
      const move = (mv) => {
        w.w = clamp(Math.round(w0 + (mv.clientX - x0) / col), 2, 12);
        w.h = clamp(Math.round(h0 + (mv.clientY - y0) / (ROW_PX + GAP)), 2, 10);
        place(w, e);
      };
      const up = () => {
        window.removeEventListener("pointermove", move);
        window.removeEventListener("pointerup", up);
        save();
      };
      window.addEventListener("pointermove", move);
      window.addEventListener("pointerup", up);
    });
  }

  // --- layout persistence ---------------------------------------------------
  /* Only the answer to the newest change may say "saved": an earlier
   * PUT finishing while a later change waits would claim too much. */
  let saveGen = 0;
  function save() {
    clearTimeout(saveTimer);
    const gen = ++saveGen;
    $("saved").textContent = "saving…";
    saveTimer = setTimeout(() => {
      api("/api/dashboards/" + encodeURIComponent(dashName), {
        method: "PUT", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(layout),
      }).then(() => { if (gen === saveGen) $("saved").textContent = "saved"; })
        .catch(() => { if (gen === saveGen) $("saved").textContent = "save failed"; });
    }, SAVE_DELAY_MS);
  }

  function newId() {
    return "w" + Date.now().toString(36) + Math.floor(Math.random() * 1e6).toString(36);
  }

  function clear() {
    for (const id of [...runtime.keys()]) {
      const rt = runtime.get(id);
      if (rt.stream) rt.stream.close();
      if (rt.destroy) rt.destroy();
      rt.el.remove();
      runtime.delete(id);
    }
  }

  async function load() {
    clear();
    $("dash-name").value = dashName;
    let series = [];
    try {
      const b = await api("/api/v1/series");
      series = (b.series || []).map((s) => s.series);
      $("series-list").replaceChildren(...series.map((s) => el("option", { value: s })));
    } catch (e) { /* aggd not up yet: the list stays empty */ }
    try {
      layout = await api("/api/dashboards/" + encodeURIComponent(dashName));
      if (!Array.isArray(layout.widgets)) throw new Error("bad layout");
    } catch (e) {
      layout = { version: 1, widgets: [
        { id: newId(), type: "chart", series: series[0] || "*", w: 8, h: 4 },
        { id: newId(), type: "alerts", series: "*", w: 4, h: 4 },
        { id: newId(), type: "anomalies", series: "*", w: 12, h: 3 },
      ] };
    }
    for (const w of layout.widgets) mount(w);
    document.body.dataset.loaded = "1";
  }

  /* "Log out" only where there is a session to end: not while apid runs
   * open (no credential exists yet), nor for a key or a token. */
  api("/api/me").then((me) => {
    $("logout").hidden = me.via !== "session";
    if (me.who) $("logout").title = "end the session of " + me.who;
  }).catch(() => {});

  $("add").addEventListener("click", () => {
    const type = $("add-type").value;
    const big = type === "chart" || type === "devices" || type === "report";
    const w = { id: newId(), type, series: $("add-series").value.trim() || "*",
                w: big ? 6 : type === "fleet" ? 12 : 4, h: type === "fleet" ? 2 : big ? 4 : 3 };
    layout.widgets.push(w);
    mount(w);
    save();
  });
  $("dash-name").addEventListener("change", () => {
    dashName = $("dash-name").value.trim() || "default";
    history.replaceState(null, "", "?d=" + encodeURIComponent(dashName));
    load();
  });
  load();
})();
