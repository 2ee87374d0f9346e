// Browser test of apid's dashboard: Debian's chromium driven by
// playwright-core. Usage: node dashboard.mjs http://127.0.0.1:PORT out.png
// Opens the page, posts readings and sees the live chart grow, sees an
// anomaly marker and an alert appear (screenshot), drags and resizes
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
  if (shot) await page.screenshot({ path: shot });
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

} catch (e) {
  check(false, "browser steps: " + e.message);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
