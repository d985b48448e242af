// The web map in a real browser (Debian's Chromium, headless, WebGL through SwiftShader):
// the map loads (its `load` event: `map.loaded()` is rarely true on a live map, whose vehicle
// source changes every frame while vehicles glide) with no console error, vehicles of the demo
// fleet appear, a fence created through the API shows up on the map without a reload (via
// /ws/tiles), a polygon drawn in the page is stored and drawn, a fence clicked in delete mode
// is deleted, and an alert reaches the panel. Asserts on state, not pixels; saves a screenshot. Usage: node map.test.mjs URL PNG
import { chromium } from 'playwright-core';

const [base, screenshot] = process.argv.slice(2);
const step = async (name, body) => {
  const started = Date.now();
  try { await body(); } catch (e) { throw new Error(`${name}: ${e.message}`); }
  console.log(`ok: ${name} (${Date.now() - started} ms)`);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--use-gl=swiftshader', '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist'],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
const errors = [];
page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
page.on('pageerror', (e) => errors.push(String(e)));
let failed = false;
try {
  await step('the server is ready', async () => {
    const deadline = Date.now() + 30000;
    while (!(await fetch(`${base}ready`).then((r) => r.ok, () => false))) {
      if (Date.now() > deadline) throw new Error('no 200 from /ready within 30 s');
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  });
  await step('the map loads', async () => {
    await page.goto(base);
    // The style, its sources and the sockets are up (the `load` event fired).
    await page.waitForFunction(() => window.geotrack?.state?.loaded, null, { timeout: 30000 });
  });
  await step('vehicles of the demo fleet appear', () =>
    page.waitForFunction(() => window.geotrack.state.devices.size >= 10, null, { timeout: 30000 }));
  await step('a fence created through the API is drawn without a reload', async () => {
    const fence = { type: 'Feature', id: 'browser-test', geometry: { type: 'Point', coordinates: [2.3522, 48.8566] },
      properties: { name: 'Browser test', radius_m: 900 } };
    const reply = await fetch(`${base}api/v1/fences/browser-test`, { method: 'PUT',
      headers: { 'content-type': 'application/json' }, body: JSON.stringify(fence) });
    if (!reply.ok) throw new Error(`PUT answered ${reply.status}`);
    await page.waitForFunction(() => window.geotrack.map.queryRenderedFeatures({ layers: ['fences'] })
      .some((f) => f.properties.name === 'Browser test'), null, { timeout: 20000 });
  });
  const fenceNamed = async (name) => {
    const reply = await fetch(`${base}api/v1/fences`);
    return (await reply.json()).features.find((f) => f.properties.name === name);
  };
  await step('a polygon drawn in the page is stored and drawn', async () => {
    await page.fill('#fence-name', 'UI triangle');
    await page.click('#draw-polygon');
    for (const [x, y] of [[100, 100], [250, 100], [175, 220]]) await page.mouse.click(x, y);
    await page.click('#draw-finish');
    await page.waitForFunction(() => document.getElementById('draw-hint').textContent.startsWith('stored as'),
      null, { timeout: 10000 });
    const stored = await fenceNamed('UI triangle');
    if (stored?.geometry.coordinates[0].length !== 4) throw new Error(`stored: ${JSON.stringify(stored)}`);
    await page.waitForFunction(() => window.geotrack.map.queryRenderedFeatures({ layers: ['fences'] })
      .some((f) => f.properties.name === 'UI triangle'), null, { timeout: 20000 });
  });
  await step('a fence clicked in delete mode is deleted', async () => {
    await page.click('#draw-delete');
    await page.mouse.click(175, 140);
    await page.waitForFunction(() => document.getElementById('draw-hint').textContent.startsWith('deleted'),
      null, { timeout: 10000 });
    if (await fenceNamed('UI triangle')) throw new Error('still stored');
  });
  await step('an alert reaches the panel', () =>
    page.waitForFunction(() => document.querySelectorAll('#alerts li').length > 0, null, { timeout: 60000 }));
  await step('no console error', async () => {
    if (errors.length) throw new Error(errors.join('\n'));
  });
} catch (e) {
  failed = true;
  console.error(`FAILED ${e.message}`);
} finally {
  if (screenshot) await page.screenshot({ path: screenshot });
  await browser.close();
}
process.exit(failed ? 1 : 0);
