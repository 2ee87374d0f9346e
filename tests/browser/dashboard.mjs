// Browser test of apid's dashboard: Debian's chromium driven by
// playwright-core. Usage: node dashboard.mjs http://127.0.0.1:PORT out.png
// Opens the page, posts readings and sees the live chart grow, sees an
// anomaly marker and an alert appear (screenshot), a novelty alarm get
// its badge in the anomaly list, drags and resizes
// widgets, reloads and finds the layout kept.
import { chromium } from "playwright-core";

const base = process.argv[2];
const shot = process.argv[3];
const exe = process.env.CHROMIUM || "/usr/bin/chromium";
let failed = false;

function check(cond, what) {
  console.log((cond ? "ok: " : "FAIL: ") + what);
  if (!cond) failed = true;
  return cond;
}

async function record(name, values, t0, stepMs) {
  const data = values.map((v, i) => ({ name, value: v, timestamp: t0 + i * stepMs }));
  const r = await fetch(base + "/api/v1/record", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ data }),
  });
  check(r.status === 200, `record ${values.length} readings of ${name} (${r.status})`);
}

const wave = (n, mid, amp, k) =>
  Array.from({ length: n }, (_, i) => +(mid + amp * Math.sin((i + k) / 9) + 0.3 * Math.cos(i * 1.7)).toFixed(2));

const browser = await chromium.launch({ executablePath: exe, args: ["--no-sandbox"] });
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("pageerror", (e) => check(false, "no page error: " + e.message));
  await page.goto(base + "/?d=it");
  await page.waitForSelector("body[data-loaded='1']");
  await page.waitForFunction(() => document.getElementById("conn").textContent === "live");
  check(true, "dashboard loads and its streams connect");
  // apid runs open (no credential yet): there is no session to end.
  await page.waitForFunction(() => document.getElementById("logout").hidden);
  check(!(await page.locator("#logout").isVisible()), "no Log out button while apid runs open");

  const chart = page.locator(".widget[data-type='chart']").first();
  const points = async () => Number(await chart.getAttribute("data-points"));
  const now = Date.now() - 200 * 1000;
  await record("machine.temp", wave(100, 22, 1.5, 0), now, 1000);
  await page.waitForFunction(() => Number(document.querySelector(".widget[data-type='chart']").dataset.points) >= 100);
  const first = await points();
  await record("machine.temp", wave(40, 22, 1.5, 100), now + 100000, 1000);
  await page.waitForFunction((n) => Number(document.querySelector(".widget[data-type='chart']").dataset.points) > n, first);
  check(await points() === first + 40, `live chart grows as readings arrive (${first} -> ${await points()})`);
  check(await chart.locator("canvas").count() > 0, "the chart draws on a canvas");

  await record("machine.temp", [22.1, 21.8, 41.5], now + 140000, 1000);
  await page.waitForFunction(() => Number(document.querySelector(".widget[data-type='chart']").dataset.anomalies) > 0);
  check(true, "an anomaly marker appears on the chart");
  const alerts = page.locator(".widget[data-type='alerts']");
  await page.waitForFunction(() => Number(document.querySelector(".widget[data-type='alerts']").dataset.rows) > 0);
  check(await alerts.locator("li", { hasText: "hot" }).count() > 0, "the alert appears in the alert list");
  await page.waitForFunction(() => Number(document.querySelector(".widget[data-type='anomalies']").dataset.rows) > 0);
  check(true, "the anomaly appears in the anomaly list");
  // Acknowledge the firing alert from the list.
  const ack = alerts.locator("li[data-state='firing'] button.ack").first();
  await ack.waitFor();
  await page.waitForTimeout(300);
  await ack.click();
  await alerts.locator("li[data-state='acknowledged']").first().waitFor();
  check(true, "the alert is acknowledged from the list");

  // Drag the chart onto the anomalies widget: the order changes and is saved.
  const order = () => page.$$eval(".widget", (ws) => ws.map((w) => w.dataset.type + ":" + w.dataset.id));
  const before = await order();
  await chart.locator(".whead").dragTo(page.locator(".widget[data-type='anomalies']"));
  const after = await order();
  check(JSON.stringify(before) !== JSON.stringify(after) && after[after.length - 1].startsWith("chart"),
        `drag moves the chart last: ${after.map((x) => x.split(":")[0])}`);
  // Resize the alerts widget with its grip.
  const grip = await alerts.locator(".resize").boundingBox();
  await page.mouse.move(grip.x + 8, grip.y + 8);
  await page.mouse.down();
  await page.mouse.move(grip.x + 8 + 200, grip.y + 8 + 100, { steps: 5 });
  await page.mouse.up();
  const span = await alerts.evaluate((e) => e.style.gridColumn);
  check(span !== "span 4", "resizing widens the alert list (" + span + ")");
  await page.waitForFunction(() => document.getElementById("saved").textContent === "saved");

  await page.reload();
  await page.waitForSelector("body[data-loaded='1']");
  const reloaded = await order();
  check(JSON.stringify(reloaded) === JSON.stringify(after), "after a reload the layout is kept");
  check(await page.locator(".widget[data-type='alerts']").evaluate((e) => e.style.gridColumn) === span,
        "after a reload the size is kept");
  const saved = await (await fetch(base + "/api/dashboards/it")).json();
  check(saved.widgets.length === 3, "the layout is stored through the API");

  // --- fleet views: devices with a map and floor plan, overview, reports ---
  const devs = [["press-1", { location: "hall-a", lat: "48.137", lon: "11.575" }],
                ["press-2", { location: "hall-a", lat: 48.139, lon: 11.581 }],
                ["pump-7", { location: "basement" }]];
  for (const [id, metadata] of devs) {
    const r = await fetch(base + "/api/devices/register", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ deviceId: id, type: id.split("-")[0], metadata }) });
    check(r.status === 201, `register ${id} (${r.status})`);
  }
  const r1 = await fetch(base + "/api/devices/press-1/events", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ type: "online" }) });
  check(r1.status < 300, `press-1 reports online (${r1.status})`);
  const vib = Array.from({ length: 30 }, (_, i) => ({
    name: "vibration", tags: { device: i % 3 ? "press-1" : "pump-7" }, value: 3 + (i % 5) / 10,
    timestamp: Date.now() - (30 - i) * 1000 }));
  const rr = await fetch(base + "/api/v1/record", { method: "POST",
    headers: { "Content-Type": "application/json" }, body: JSON.stringify({ data: vib }) });
  check(rr.status === 200, "30 device readings recorded");

  const addWidget = async (type) => {
    await page.selectOption("#add-type", type);
    await page.click("#add");
    const w = page.locator(`.widget[data-type='${type}']`).last();
    await w.waitFor();
    return w;
  };
  const fleet = await addWidget("fleet");
  await page.waitForFunction(() => {
    const e = document.querySelector(".widget[data-type='fleet']");
    return e.dataset.devices === "3" && Number(e.dataset.readings) >= 173;
  }, null, { timeout: 20000 });
  const api = await (await fetch(base + "/api/fleet")).json();
  check(await fleet.locator(".tile .tv").first().textContent() === "3" &&
        (await fleet.locator(".tile").nth(1).textContent()).includes(api.readings.count.toLocaleString("en")),
        `fleet overview shows 3 devices and ${api.readings.count} readings in 24 h`);
  check(Number(await fleet.getAttribute("data-anomalies")) === api.anomalies.count && api.anomalies.count > 0,
        `fleet overview counts the anomalies (${api.anomalies.count})`);

  const devw = await addWidget("devices");
  await page.waitForFunction(() => document.querySelector(".widget[data-type='devices']").dataset.rows === "3");
  const p1 = devw.locator("tr[data-device='press-1']");
  check(await p1.getAttribute("data-online") === "true" && (await p1.locator("td").nth(4).textContent()) === "20",
        "device list: press-1 online with its 20 readings");
  check(await devw.locator("tr[data-device='pump-7'] td").nth(3).textContent() === "basement",
        "device list shows locations");
  // A presence change reaches the list over the stream (kind "status"),
  // well before the 5 s refresh: press-1 goes offline, then back.
  for (const [type, want] of [["offline", "false"], ["online", "true"]]) {
    const before = Number(await devw.getAttribute("data-status-events"));
    const t0 = Date.now();
    const r = await fetch(base + "/api/devices/press-1/events", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ type }) });
    check(r.status === 200, `press-1 reports ${type} (${r.status})`);
    const live = await page.waitForFunction(([b, w]) => {
      const e = document.querySelector(".widget[data-type='devices']");
      return Number(e.dataset.statusEvents) > b &&
        e.querySelector("tr[data-device='press-1']").dataset.online === w;
    }, [before, want], { timeout: 4000 }).then(() => true, () => false);
    check(live, `device list: press-1 ${type} from the stream (${Date.now() - t0} ms, limit 4000)`);
    const tile = await page.waitForFunction((w) =>
      document.querySelector(".widget[data-type='fleet']").dataset.online === w,
    want === "true" ? "1" : "0", { timeout: 4000 }).then(() => true, () => false);
    check(tile, `fleet overview: ${want === "true" ? 1 : 0} online after press-1 ${type} (${Date.now() - t0} ms)`);
  }
  await devw.locator("button.tab[data-view='map']").click();
  await page.waitForFunction(() => document.querySelector(".widget[data-type='devices']").dataset.mapped === "3");
  check(await devw.locator("svg.geo g.pin").count() === 2, "the map places the two devices with coordinates");
  const pins = await devw.locator("svg.geo g.pin").evaluateAll((gs) => gs.map((g) => g.getAttribute("transform")));
  check(pins[0] !== pins[1], "at different places: " + pins.join(" "));
  check(await devw.locator(".room[data-location='basement'] .chip[data-device='pump-7']").count() === 1,
        "the floor plan puts pump-7 in the basement");

  const rep = await addWidget("report");
  await page.waitForFunction(() => {
    const e = document.querySelector(".widget[data-type='report']");
    return e.dataset.report === "device-performance" && e.dataset.rows === "3";
  });
  check((await rep.locator("tbody tr").first().textContent()).startsWith("press-1"),
        "device performance report lists the devices");
  await rep.locator("select.pick").selectOption("anomaly-summary");
  await page.waitForFunction(() => {
    const e = document.querySelector(".widget[data-type='report']");
    return e.dataset.report === "anomaly-summary" && Number(e.dataset.rows) > 0;
  });
  check((await rep.locator("tbody").textContent()).includes("machine.temp"),
        "anomaly summary names machine.temp");
  await rep.locator("select.pick").selectOption("fleet-health");
  await page.waitForFunction(() => document.querySelector(".widget[data-type='report']").dataset.report === "fleet-health");
  const health = await (await fetch(base + "/api/reports/fleet-health")).json();
  check(await rep.locator(".verdict").textContent() === health.status.toUpperCase() &&
        health.devices.online === 1 && health.silent.join() === "press-2",
        `fleet health: ${health.status}, 1 of 3 online, press-2 silent`);

  // A chart of one series draws anomalyd's forecast band ahead of it.
  await page.fill("#add-series", "machine.temp");
  const one = await addWidget("chart");
  await page.fill("#add-series", "");
  await page.waitForFunction(() => {
    const cs = document.querySelectorAll(".widget[data-type='chart']");
    return Number(cs[cs.length - 1].dataset.forecast) > 0;
  }, null, { timeout: 20000 });
  const fc = await (await fetch(base + "/api/v1/forecast/machine.temp?horizon=60s&points=24")).json();
  check(fc.ready && await one.getAttribute("data-forecast") === String(fc.forecast.length) &&
        await one.getAttribute("data-points") === "143",
        `the machine.temp chart draws its 143 readings and a ${fc.forecast.length}-point forecast band`);
  await page.waitForTimeout(500);
  if (shot) {
    // The whole grid in one picture, the header on top.
    const h = await page.evaluate(() => document.documentElement.scrollHeight);
    await page.setViewportSize({ width: 1280, height: Math.min(h, 2400) });
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.waitForTimeout(500);
    await page.screenshot({ path: shot });
    await page.setViewportSize({ width: 1280, height: 800 });
  }

  await page.reload();
  await page.waitForSelector("body[data-loaded='1']");
  await page.waitForFunction(() => document.querySelector(".widget[data-type='devices']")?.dataset.mapped === "3");
  await page.waitForFunction(() => Number(document.querySelector(".widget[data-type='anomalies']").dataset.rows) > 0);
  check((await page.locator(".widget[data-type='anomalies'] li").first().textContent()).includes("machine.temp"),
        "after a reload the anomaly list shows the recent anomalies again");
  check(await page.locator(".widget[data-type='report'] select.pick").inputValue() === "fleet-health",
        "after a reload the new widgets, the map view and the chosen report are kept");
  const saved2 = await (await fetch(base + "/api/dashboards/it")).json();
  check(saved2.widgets.length === 7, "seven widgets stored");

  // anomalyd's novelty alarm: a series past its 750-reading warm-up, then
  // a deviation far beyond any it had. The anomaly list marks that row
  // with an "alarm" badge; an ordinary anomaly gets none.
  const t1 = Date.now() - 1000 * 1000;
  await record("boiler.temp", wave(900, 60, 1.5, 0), t1, 1000);
  await record("boiler.temp", [160], t1 + 900 * 1000, 1000);
  const anoms = page.locator(".widget[data-type='anomalies']");
  await anoms.locator("li.alarm", { hasText: "boiler.temp" }).first().waitFor({ timeout: 20000 });
  const row = anoms.locator("li.alarm", { hasText: "boiler.temp" }).first();
  check((await row.locator(".badge.firing").textContent()) === "alarm" &&
        (await row.textContent()).includes("= 160"),
        "the novelty alarm on boiler.temp's 160 has its alarm badge in the anomaly list");
  check(await anoms.locator("li:not(.alarm)", { hasText: "machine.temp" }).count() > 0 &&
        await anoms.locator("li.alarm", { hasText: "machine.temp" }).count() === 0,
        "machine.temp's anomalies (no warm-up yet) carry no alarm badge");
  const api2 = await (await fetch(base + "/api/v1/anomalies/boiler.temp?alarm=true")).json();
  check(api2.anomalies.length === 1 && api2.anomalies[0].value === 160 && api2.anomalies[0].alarm === true,
        `GET /api/v1/anomalies/boiler.temp?alarm=true answers the one alarm (${api2.anomalies.length})`);

} catch (e) {
  check(false, "browser steps: " + e.message);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
