// The Leaflet and OpenLayers example pages in a real browser, on a server with tokens (the page
// opened with `?token=` and `&since=0`, so its alerts socket carries both from the start): each
// loads with no console error, opens WebSockets whose URL has one query string with the token,
// gets `fences` and `positions` tiles from the server, refetches fence tiles when a fence is
// written (announced on /ws/tiles), and lists the alert of a device the test drives into a
// fence. Asserts on requests and the page's state; saves leaflet.png and openlayers.png.
// Usage: BROWSER_TEST_TOKEN=ADMIN_TOKEN node examples.test.mjs URL SCREENSHOT_DIR
import { api, launch, run, serverReady, step } from './harness.mjs';

const [base, shots] = process.argv.slice(2);
const token = process.env.BROWSER_TEST_TOKEN;
if (!token) throw new Error('BROWSER_TEST_TOKEN must name an admin token of the server');
await serverReady(base);
// Something in view (the pages open on Paris) for the tiles to hold: a fence and a vehicle.
await api(base, 'PUT', 'api/v1/fences/seed', { type: 'Feature', id: 'seed',
  geometry: { type: 'Point', coordinates: [2.3522, 48.8566] }, properties: { name: 'Seed', radius_m: 300 } }, token);
await api(base, 'POST', 'api/v1/positions', [{ device: 'seed-vehicle', ts: new Date().toISOString(), lon: 2.3522, lat: 48.8566 }],
  token);
const browser = await launch();
let ok = true;
for (const [name, offset] of [['leaflet', 0], ['openlayers', 0.01]]) {
  ok = await run(browser, `${shots}/${name}.png`, async (page, errors) => {
    const tiles = { fences: [], positions: [] };
    const sockets = [];
    page.on('websocket', (ws) => sockets.push(ws.url()));
    page.on('response', (r) => {
      const layer = new URL(r.url()).pathname.split('/')[2];
      if (r.url().includes('/tiles/') && tiles[layer]) tiles[layer].push(r.status());
    });
    const gate = [2.3722 + offset, 48.8466];
    await step(`${name}: the page loads with its alerts socket live`, async () => {
      await page.goto(`${base}examples/${name}.html?token=${encodeURIComponent(token)}&since=0`);
      await page.waitForFunction(() => document.getElementById('status').textContent === 'live', null, { timeout: 20000 });
    });
    await step(`${name}: its WebSockets carry the token in one query string`, async () => {
      const alerts = sockets.filter((u) => new URL(u).pathname === '/ws/alerts');
      if (!alerts.length || sockets.some((u) => u.split('?').length !== 2
        || new URL(u).searchParams.get('token') !== token)) {
        throw new Error(`socket URLs: ${sockets.join(' ')}`);
      }
      if (!alerts.every((u) => new URL(u).searchParams.get('since') === '0')) throw new Error(`alerts: ${alerts}`);
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
        geometry: { type: 'Point', coordinates: gate }, properties: { name: `Gate ${name}`, radius_m: 150 } }, token);
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
      ], token);
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
