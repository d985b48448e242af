// The Leaflet and OpenLayers example pages in a real browser, on a server with tokens (the page
// opened with `?token=` and `&since=0`, so its alerts socket carries both from the start): each
// loads with no console error and no request off the server, loads the server's style with the
// token, opens WebSockets whose URL has one query string with the token, gets `fences` and
// `positions` tiles (positions again a few seconds later), draws the seeded fence and vehicle
// with their labels (asked of the map the plugin built: MapLibre's rendered features inside
// Leaflet, which needs the server's glyphs; ol-mapbox-style's layers and text styles in
// OpenLayers), refetches fence tiles when a fence is written (announced on /ws/tiles), and lists
// the alert of a device the test drives into a fence. Saves leaflet.png and openlayers.png.
// Usage: BROWSER_TEST_TOKEN=ADMIN_TOKEN node examples.test.mjs URL SCREENSHOT_DIR
import { api, launch, run, serverReady, step } from './harness.mjs';

const [base, shots] = process.argv.slice(2);
const token = process.env.BROWSER_TEST_TOKEN;
if (!token) throw new Error('BROWSER_TEST_TOKEN must name an admin token of the server');
await serverReady(base);
// Something in view (the pages open on Paris) for the tiles to hold: a fence and a vehicle.
await api(base, 'PUT', 'api/v1/fences/seed', { type: 'Feature', id: 'seed',
  geometry: { type: 'Point', coordinates: [2.3522, 48.8566] }, properties: { name: 'Seed', radius_m: 300 } }, token);
// The vehicle beside the fence, so that neither label hides the other.
await api(base, 'POST', 'api/v1/positions', [{ device: 'seed-vehicle', ts: new Date().toISOString(), lon: 2.3622, lat: 48.8566 }],
  token);
const browser = await launch();
let ok = true;
// In the page: property `prop` of the features of style layer `layer` that the map draws, and
// with `label`, the texts of that label layer drawn over them.
const drawn = {
  // MapLibre inside Leaflet: rendered features; a label layer's are the labels placed, which
  // needs their glyphs.
  leaflet: ([layer, prop, label]) => {
    const gl = window.example.layer.getMaplibreMap();
    return gl.getLayer(label ?? layer) ? gl.queryRenderedFeatures({ layers: [label ?? layer] }).map((f) => f.properties[prop]) : [];
  },
  // OpenLayers: the features in view of the layer ol-mapbox-style built for that style layer's
  // source; for a label layer, the text of the style it gives each of them for that layer
  // (OpenLayers draws text itself).
  openlayers: ([layer, prop, label]) => {
    const { map } = window.example;
    const olLayer = map.get('mapbox-style') && olms.getLayer(map, label ?? layer); // once the style is applied
    if (!olLayer) return [];
    const features = olLayer.getFeaturesInExtent(map.getView().calculateExtent(map.getSize()));
    if (!label) return features.map((f) => f.get(prop));
    // Read at once: ol-mapbox-style reuses its style objects from one feature to the next.
    const text = (t) => (Array.isArray(t) ? t.filter((_, i) => i % 2 === 0).join('') : t);
    const resolution = map.getView().getResolution();
    return features.flatMap((f) => (olms.getStyleForLayer(f, resolution, olLayer, label) ?? [])
      .map((style) => text(style.getText()?.getText())));
  },
};

for (const [name, offset] of [['leaflet', 0], ['openlayers', 0.01]]) {
  ok = await run(browser, `${shots}/${name}.png`, async (page, errors) => {
    const tiles = { fences: [], positions: [] };
    const sockets = [], styles = [], glyphs = [], elsewhere = [];
    page.on('websocket', (ws) => sockets.push(ws.url()));
    page.on('request', (r) => { if (!/^(data|blob):/.test(r.url()) && !r.url().startsWith(base)) elsewhere.push(r.url()); });
    page.on('response', (r) => {
      const path = new URL(r.url()).pathname;
      const layer = path.split('/')[2];
      if (path.startsWith('/tiles/') && tiles[layer]) tiles[layer].push(r.status());
      if (path === '/styles/default.json') styles.push([r.status(), new URL(r.url()).searchParams.get('token')]);
      if (path.startsWith('/fonts/')) glyphs.push([r.status(), decodeURIComponent(path)]);
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
    // The page fetches its style and opens its alerts socket independently: either may come first.
    await step(`${name}: the server's style is loaded with the token`, async () => {
      const deadline = Date.now() + 20000;
      while (!styles.some(([status, t]) => status === 200 && t === token)) {
        if (Date.now() > deadline) throw new Error(`style answers: ${JSON.stringify(styles)}`);
        await page.waitForTimeout(100);
      }
    });
    await step(`${name}: fences and positions tiles arrive`, async () => {
      const deadline = Date.now() + 20000;
      while (!(tiles.fences.includes(200) && tiles.positions.includes(200))) {
        if (Date.now() > deadline) throw new Error(`tile answers: ${JSON.stringify(tiles)}`);
        await page.waitForTimeout(200);
      }
    });
    const shows = (what, args, value) => step(`${name}: ${what}`, async () => {
      const deadline = Date.now() + 20000;
      let seen;
      while (!(seen = await page.evaluate(drawn[name], args)).includes(value)) {
        if (Date.now() > deadline) throw new Error(`no ${value} among ${JSON.stringify(seen)}`);
        await page.waitForTimeout(250);
      }
    });
    await shows('the countries basemap is drawn', ['land', 'name'], 'France');
    await shows('the seeded fence is drawn', ['fences', 'name'], 'Seed');
    await shows('the seeded vehicle is drawn', ['positions', 'device'], 'seed-vehicle');
    await shows('the fence is labelled with its name', ['fences', 'name', 'fence-labels'], 'Seed');
    await shows('the vehicle is labelled with its id', ['positions', 'device', 'position-labels'], 'seed-vehicle');
    if (name === 'leaflet') {
      await step(`${name}: labels use the server's glyphs`, async () => {
        if (!glyphs.some(([status, path]) => status === 200 && path === '/fonts/Noto Sans Regular/0-255.pbf')) {
          throw new Error(`glyph answers: ${JSON.stringify(glyphs)}`);
        }
      });
    }
    await step(`${name}: positions tiles are fetched again`, async () => {
      const before = tiles.positions.length;
      const deadline = Date.now() + 12000;
      while (tiles.positions.length === before) {
        if (Date.now() > deadline) throw new Error('no positions tile requested again');
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
    await step(`${name}: no console error, no request off the server`, async () => {
      if (errors.length || elsewhere.length) throw new Error([...errors, ...elsewhere].join('\n'));
    });
  }) && ok;
}
await browser.close();
process.exit(ok ? 0 : 1);
