// The Leaflet and OpenLayers example pages in a real browser: each loads with no console error,
// gets `fences` and `positions` tiles from the server, refetches fence tiles when a fence is
// written (announced on /ws/tiles), and lists the alert of a device the test drives into a
// fence. Asserts on requests and the page's state; saves leaflet.png and openlayers.png.
// Usage: node examples.test.mjs URL SCREENSHOT_DIR
import { api, launch, run, serverReady, step } from './harness.mjs';

const [base, shots] = process.argv.slice(2);
await serverReady(base);
const browser = await launch();
let ok = true;
for (const [name, offset] of [['leaflet', 0], ['openlayers', 0.01]]) {
  ok = await run(browser, `${shots}/${name}.png`, async (page, errors) => {
    const tiles = { fences: [], positions: [] };
    page.on('response', (r) => {
      const layer = new URL(r.url()).pathname.split('/')[2];
      if (r.url().includes('/tiles/') && tiles[layer]) tiles[layer].push(r.status());
    });
    const gate = [2.3722 + offset, 48.8466];
    await step(`${name}: the page loads with its alerts socket live`, async () => {
      await page.goto(`${base}examples/${name}.html`);
      await page.waitForFunction(() => document.getElementById('status').textContent === 'live', null, { timeout: 20000 });
    });
    await step(`${name}: fences and positions tiles arrive`, async () => {
      const deadline = Date.now() + 20000;
      while (!(tiles.fences.includes(200) && tiles.positions.includes(200))) {
        if (Date.now() > deadline) throw new Error(`tile answers: ${JSON.stringify(tiles)}`);
        await page.waitForTimeout(200);
      }
    });
    await step(`${name}: a fence write refetches fence tiles`, async () => {
      const before = tiles.fences.length;
      await api(base, 'PUT', `api/v1/fences/gate-${name}`, { type: 'Feature', id: `gate-${name}`,
        geometry: { type: 'Point', coordinates: gate }, properties: { name: `Gate ${name}`, radius_m: 150 } });
      const deadline = Date.now() + 10000;
      while (tiles.fences.length === before) {
        if (Date.now() > deadline) throw new Error('no fence tile requested after the write');
        await page.waitForTimeout(100);
      }
    });
    await step(`${name}: a device driven into a fence shows up in the alerts`, async () => {
      const now = Date.now(), device = `walker-${name}`;
      await api(base, 'POST', 'api/v1/positions', [
        { device, ts: new Date(now - 2000).toISOString(), lon: gate[0], lat: gate[1] + 0.01 },
        { device, ts: new Date(now - 1000).toISOString(), lon: gate[0], lat: gate[1] },
      ]);
      await page.waitForFunction((d) => [...document.querySelectorAll('#alerts li')]
        .some((li) => li.textContent.includes(`${d} enter`)), device, { timeout: 15000 });
    });
    await step(`${name}: no console error`, async () => {
      if (errors.length) throw new Error(errors.join('\n'));
    });
  }) && ok;
}
await browser.close();
process.exit(ok ? 0 : 1);
