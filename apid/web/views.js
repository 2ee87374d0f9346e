/*
 * sensorpipe dashboard: the fleet views (devices with a map or floor
 * plan, the fleet overview, reports). app.js mounts them like its own
 * widgets: spViews[type](widget, runtime, helpers, save). Each refreshes
 * itself from apid's REST API (/api/reports/..., /api/fleet) and says
 * what it shows in data-* attributes (the browser test reads them); the
 * device list also follows the stream's "status" kind live.
 */
"use strict";
window.spViews = (function () {
  const REFRESH_MS = 5000;
  const REPORTS = {
    "device-performance": "Device performance",
    "anomaly-summary": "Anomaly summary",
    "fleet-health": "Fleet health",
  };

  /* Call load now and every REFRESH_MS until the widget goes. */
  function every(rt, load) {
    load();
    const t = setInterval(load, REFRESH_MS);
    const old = rt.destroy;
    rt.destroy = () => { clearInterval(t); if (old) old(); };
  }

  const num = (v) => (typeof v === "number" ? v : typeof v === "string" && v.trim() !== "" ? Number(v) : NaN);
  function coords(d) {
    const m = d.metadata || {};
    const lat = num(m.lat ?? m.latitude), lon = num(m.lon ?? m.lng ?? m.longitude);
    return Number.isFinite(lat) && Number.isFinite(lon) && Math.abs(lat) <= 90 && Math.abs(lon) <= 180
      ? { lat, lon } : null;
  }
  const ago = (iso, h) => (iso ? h.when(Date.parse(iso)) : "never");

  // --- devices: list, map, floor plan ----------------------------------------
  function devices(w, rt, h, save) {
    const { el, api } = h;
    w.view = w.view || "list";
    const tabs = el("div", { class: "tabs" });
    const pane = el("div", { class: "pane" });
    rt.body.append(tabs, pane);
    rt.el.dataset.rows = "0";
    let rows = [];

    for (const v of ["list", "map"]) {
      tabs.append(el("button", { class: "tab", "data-view": v, onclick: () => {
        w.view = v;
        save();
        render();
      } }, v === "list" ? "List" : "Map"));
    }

    function dot(d) {
      const on = d.online === true;
      return el("span", { class: "dot " + (on ? "on" : d.registered ? "off" : "unknown"),
                          title: on ? "online" : d.registered ? "offline" : "not registered" });
    }

    function list() {
      const t = el("table", { class: "table devices" },
        el("thead", {}, el("tr", {}, ...["", "device", "type", "location", "readings", "last reading", "anomalies"]
          .map((x) => el("th", {}, x)))));
      const tb = el("tbody");
      for (const d of rows) {
        tb.append(el("tr", { "data-device": d.deviceId, "data-online": String(d.online === true) },
          el("td", {}, dot(d)), el("td", {}, d.deviceId), el("td", {}, d.type || "-"),
          el("td", {}, (d.metadata && d.metadata.location) || "-"),
          el("td", { class: "n" }, String(d.readings)),
          el("td", { class: "when" }, ago(d.last_reading, h)),
          el("td", { class: "n" + (d.anomalies ? " hot" : "") }, String(d.anomalies))));
      }
      t.append(tb);
      return t;
    }

    /* Devices with coordinates on a plane scaled to their bounds; the
     * others with a location as rooms of a floor plan. */
    function map() {
      const box = el("div", { class: "map" });
      const placed = rows.map((d) => [d, coords(d)]).filter(([, c]) => c);
      let mapped = 0;
      if (placed.length) {
        const W = 1000, H = 400, pad = 40, right = 180; // room for labels
        const lats = placed.map(([, c]) => c.lat), lons = placed.map(([, c]) => c.lon);
        const [la0, la1] = [Math.min(...lats), Math.max(...lats)];
        const [lo0, lo1] = [Math.min(...lons), Math.max(...lons)];
        const x = (lon) => pad + (lo1 > lo0 ? (lon - lo0) / (lo1 - lo0) : 0.5) * (W - pad - right);
        const y = (lat) => pad + (la1 > la0 ? (la1 - lat) / (la1 - la0) : 0.5) * (H - 2 * pad);
        const ns = "http://www.w3.org/2000/svg";
        const svg = document.createElementNS(ns, "svg");
        svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
        svg.setAttribute("class", "geo");
        for (let i = 1; i < 4; i++) {
          for (const [x1, y1, x2, y2] of [[0, i * H / 4, W, i * H / 4], [i * W / 4, 0, i * W / 4, H]]) {
            const l = document.createElementNS(ns, "line");
            Object.entries({ x1, y1, x2, y2, class: "grid" }).forEach(([k, v]) => l.setAttribute(k, v));
            svg.append(l);
          }
        }
        for (const [d, c] of placed) {
          const g = document.createElementNS(ns, "g");
          g.setAttribute("class", "pin " + (d.online ? "on" : "off") + (d.anomalies ? " hot" : ""));
          g.setAttribute("data-device", d.deviceId);
          g.setAttribute("transform", `translate(${x(c.lon).toFixed(1)},${y(c.lat).toFixed(1)})`);
          const circle = document.createElementNS(ns, "circle");
          circle.setAttribute("r", d.anomalies ? 11 : 8);
          const label = document.createElementNS(ns, "text");
          label.setAttribute("x", 14);
          label.setAttribute("y", 5);
          label.textContent = d.deviceId;
          const tip = document.createElementNS(ns, "title");
          tip.textContent = `${d.deviceId}: ${c.lat}, ${c.lon} · ${d.readings} readings · ${d.anomalies} anomalies`;
          g.append(circle, label, tip);
          svg.append(g);
          mapped++;
        }
        box.append(svg);
      }
      const rooms = new Map();
      for (const d of rows) {
        const loc = d.metadata && d.metadata.location;
        if (!loc || coords(d)) continue;
        if (!rooms.has(loc)) rooms.set(loc, []);
        rooms.get(loc).push(d);
      }
      if (rooms.size) {
        const plan = el("div", { class: "plan" });
        for (const [loc, ds] of [...rooms].sort()) {
          plan.append(el("div", { class: "room", "data-location": loc },
            el("div", { class: "rname" }, loc),
            ...ds.map((d) => el("span", { class: "chip" + (d.anomalies ? " hot" : ""), "data-device": d.deviceId },
              dot(d), d.deviceId))));
          mapped += ds.length;
        }
        box.append(plan);
      }
      if (!mapped) box.append(el("div", { class: "empty" }, "no device has coordinates (metadata lat/lon) or a location"));
      rt.el.dataset.mapped = String(mapped);
      return box;
    }

    function render() {
      tabs.querySelectorAll(".tab").forEach((b) => b.classList.toggle("active", b.dataset.view === w.view));
      pane.replaceChildren(w.view === "map" ? map() : list());
      rt.el.dataset.view = w.view;
      rt.el.dataset.rows = String(rows.length);
      rt.el.dataset.online = String(rows.filter((d) => d.online === true).length);
      rt.meta.textContent = `${rt.el.dataset.online}/${rows.length} online`;
    }

    every(rt, () => api("/api/reports/device-performance").then((b) => {
      rows = (b.devices || []).sort((a, c) => a.deviceId.localeCompare(c.deviceId));
      render();
    }).catch(() => {}));

    /* Presence and lifecycle changes as they happen (kind "status"),
     * between the reports' refreshes. */
    rt.el.dataset.statusEvents = "0";
    rt.stream = h.openStream({ kinds: ["status"] }, (m) => {
      if (m.type !== "status") return;
      for (const it of m.items) {
        let d = rows.find((r) => r.deviceId === it.device);
        if (it.event === "decommissioned") {
          if (d && d.readings) Object.assign(d, { registered: false, online: false });
          else rows = rows.filter((r) => r.deviceId !== it.device);
        } else {
          if (!d) {
            d = { deviceId: it.device, readings: 0, series: 0, anomalies: 0, metadata: {} };
            rows.push(d);
            rows.sort((a, c) => a.deviceId.localeCompare(c.deviceId));
          }
          Object.assign(d, { registered: true, online: it.online, status: it.status, type: it.type });
        }
        rt.el.dataset.statusEvents = String(Number(rt.el.dataset.statusEvents) + 1);
      }
      render();
    });
  }

  // --- fleet overview -----------------------------------------------------------
  function fleet(w, rt, h) {
    const { el, api } = h;
    const tiles = el("div", { class: "tiles" });
    rt.body.append(tiles);
    function tile(label, value, sub, cls) {
      return el("div", { class: "tile " + (cls || "") }, el("div", { class: "tv" }, String(value)),
        el("div", { class: "tl" }, label), el("div", { class: "ts" }, sub || ""));
    }
    const load = () => api("/api/fleet").then((b) => {
      const d = b.devices, a = b.anomalies, al = b.alerts, s = a.by_severity;
      tiles.replaceChildren(
        tile("devices", d.total, `${d.online} online · ${d.offline} offline`, d.offline ? "warn" : "ok"),
        tile("readings (24 h)", b.readings.count.toLocaleString("en"), `${b.readings.series} series`),
        tile("anomalies (24 h)", a.count, `${s.critical} critical · ${s.warning} warning · ${s.info} info`,
             s.critical ? "crit" : a.count ? "warn" : "ok"),
        tile("active alerts", al.active, Object.entries(al.by_severity).map(([k, v]) => `${v} ${k}`).join(" · "),
             al.active ? "crit" : "ok"));
      rt.el.dataset.devices = String(d.total);
      rt.el.dataset.online = String(d.online);
      rt.el.dataset.readings = String(b.readings.count);
      rt.el.dataset.anomalies = String(a.count);
      rt.el.dataset.alerts = String(al.active);
    }).catch(() => {});
    every(rt, load);
    /* A device coming or going refreshes the tiles (at most once a
     * second, however many change at once). */
    let soon = null;
    rt.stream = h.openStream({ kinds: ["status"] }, (m) => {
      if (m.type !== "status" || soon) return;
      soon = setTimeout(() => { soon = null; load(); }, 1000);
    });
  }

  // --- reports ----------------------------------------------------------------------
  function table(el, head, body) {
    return el("table", { class: "table" }, el("thead", {}, el("tr", {}, ...head.map((x) => el("th", {}, x)))),
      el("tbody", {}, ...body.map((r) => el("tr", {}, ...r.map((x) => el("td", {}, String(x)))))));
  }

  function report(w, rt, h, save) {
    const { el, api } = h;
    w.report = REPORTS[w.report] ? w.report : "device-performance";
    const pick = el("select", { class: "pick", "aria-label": "report" },
      ...Object.entries(REPORTS).map(([k, v]) => el("option", { value: k }, v)));
    pick.value = w.report;
    const out = el("div", { class: "report" });
    rt.body.append(pick, out);
    rt.el.dataset.rows = "0";
    const render = {
      "device-performance": (b) => (b.devices || []).length
        ? [table(el, ["device", "readings", "series", "anomalies", "max score", "last reading"],
            b.devices.map((d) => [d.deviceId, d.readings, d.series, d.anomalies,
              d.max_score == null ? "-" : d.max_score.toFixed(2), ago(d.last_reading, h)])), b.devices.length]
        : [el("div", { class: "empty" }, "no devices"), 0],
      "anomaly-summary": (b) => [el("div", {},
        el("p", { class: "sum" }, `${b.count} anomalies: ${b.by_severity.critical} critical, ` +
          `${b.by_severity.warning} warning, ${b.by_severity.info} info; by method ` +
          (Object.entries(b.by_method).map(([k, v]) => `${k} ${v}`).join(", ") || "-")),
        table(el, ["series", "anomalies", "max score", "last"],
          b.top_series.map((s) => [s.series, s.count, s.max_score.toFixed(2), ago(s.last, h)]))), b.top_series.length],
      "fleet-health": (b) => [el("div", {},
        el("p", { class: "verdict " + b.status }, b.status.toUpperCase()),
        el("p", { class: "sum" }, `${b.devices.online} of ${b.devices.total} devices online, ` +
          `${b.alerts_firing} alerts firing (${b.critical_firing} critical), ${b.critical_anomalies} critical anomalies`),
        el("ul", { class: "reasons" }, ...b.reasons.map((r) => el("li", {}, r))),
        b.silent.length ? el("p", { class: "sum" }, "silent: " + b.silent.join(", ")) : ""), b.reasons.length],
    };
    function load() {
      const which = w.report;
      api("/api/reports/" + which).then((b) => {
        if (which !== w.report) return;
        const [node, n] = render[which](b);
        out.replaceChildren(node);
        rt.el.dataset.report = which;
        rt.el.dataset.rows = String(n);
        rt.meta.textContent = REPORTS[which];
      }).catch(() => {});
    }
    pick.addEventListener("change", () => { w.report = pick.value; save(); load(); });
    every(rt, load);
  }

  const titles = { devices: "Devices", fleet: "Fleet overview", report: "Report" };
  return { devices, fleet, report, titles };
})();
