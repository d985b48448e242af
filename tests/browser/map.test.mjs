// The web map in a real browser (Debian's Chromium, headless, WebGL through SwiftShader):
// the map loads (its `load` event: `map.loaded()` is rarely true on a live map, whose vehicle
// source changes every frame while vehicles glide) with no console error, vehicles of the demo
// fleet appear, a fence created through the API shows up on the map without a reload (via
// /ws/tiles), fence names and vehicle ids are labelled, a polygon drawn in the page is stored
// and drawn, a fence clicked in delete mode is deleted, a polygon's and a circle's shapes edited with the mouse are stored (and an
// invalid shape shows the API's reason), a vehicle's popup lists its trips, a device's track
// replays under the time slider, the nearest vehicles to a clicked point are listed and ringed
// (all, then a device group's only), and an alert reaches the panel; then, on a fresh page, an
// outside basemap named by the style is drawn under geotrack's layers. Asserts on state, not
// pixels; saves screenshots (map.png, edit.png, replay.png, nearby.png, basemap.png).
// Usage: node map.test.mjs URL SCREENSHOT_DIR
import { api, launch, run, serverReady, step } from './harness.mjs';

const [base, shots] = process.argv.slice(2);
const browser = await launch();
const ok = await run(browser, `${shots}/map.png`, async (page, errors) => {
  await step('the server is ready', () => serverReady(base));
  await step('the map loads', async () => {
    await page.goto(base);
    // The style, its sources and the sockets are up (the `load` event fired).
    await page.waitForFunction(() => window.geotrack?.state?.loaded, null, { timeout: 30000 });
  });
  await step('vehicles of the demo fleet appear', () =>
    page.waitForFunction(() => window.geotrack.state.devices.size >= 10, null, { timeout: 30000 }));
  const rendered = (name) => page.waitForFunction((n) => window.geotrack.map.queryRenderedFeatures({ layers: ['fences'] })
    .some((f) => f.properties.name === n), name, { timeout: 20000 });
  await step('a fence created through the API is drawn without a reload', async () => {
    await api(base, 'PUT', 'api/v1/fences/browser-test', { type: 'Feature', id: 'browser-test',
      geometry: { type: 'Point', coordinates: [2.3522, 48.8566] }, properties: { name: 'Browser test', radius_m: 900 } });
    await rendered('Browser test');
  });
  await step('fence names and vehicle ids are labelled (glyphs from the server)', () => page.waitForFunction(() => {
    const labels = (id) => window.geotrack.map.queryRenderedFeatures({ layers: [id] });
    return labels('fence-labels').length > 0 && labels('vehicle-labels').length > 0;
  }, null, { timeout: 20000 }));
  const fenceNamed = async (name) => (await api(base, 'GET', 'api/v1/fences')).features.find((f) => f.properties.name === name);
  const hint = (prefix) => page.waitForFunction((p) => document.getElementById('draw-hint').textContent.startsWith(p),
    prefix, { timeout: 10000 });
  await step('a polygon drawn in the page is stored and drawn', async () => {
    await page.fill('#fence-name', 'UI triangle');
    await page.click('#draw-polygon');
    for (const [x, y] of [[100, 100], [250, 100], [175, 220]]) await page.mouse.click(x, y);
    await page.click('#draw-finish');
    await hint('stored as');
    const stored = await fenceNamed('UI triangle');
    if (stored?.geometry.coordinates[0].length !== 4) throw new Error(`stored: ${JSON.stringify(stored)}`);
    await rendered('UI triangle');
  });
  await step('a fence clicked in delete mode is deleted', async () => {
    await page.click('#draw-delete');
    await page.mouse.click(175, 140);
    await hint('deleted');
    if (await fenceNamed('UI triangle')) throw new Error('still stored');
  });

  // Editing, away from the demo fleet and its fences (they lie within 3 km of the centre).
  const centre = [2.3522, 48.9166], h = 0.002;
  const show = (at, zoom) => page.evaluate(([c, z]) => window.geotrack.map.jumpTo({ center: c, zoom: z }), [at, zoom]);
  const pixel = (lngLat) => page.evaluate((at) => { const p = window.geotrack.map.project(at); return [p.x, p.y]; }, lngLat);
  const lngLatAt = (xy) => page.evaluate((p) => window.geotrack.map.unproject(p).toArray(), xy);
  const editing = (id) => page.waitForFunction((i) => window.geotrack.editing()?.id === i, id, { timeout: 10000 });
  // Drags the edit handle drawn at `from` (once it is rendered there) to pixel `to`.
  const drag = async (from, to) => {
    const [x, y] = await pixel(from);
    await page.waitForFunction(([px, py]) => window.geotrack.map.queryRenderedFeatures([px, py], { layers: ['edit-handles'] }).length > 0,
      [x, y], { timeout: 10000 });
    await page.mouse.move(x, y);
    await page.mouse.down();
    await page.mouse.move(to[0], to[1], { steps: 6 });
    await page.mouse.up();
  };
  const near = (a, b, what) => {
    if (Math.abs(a[0] - b[0]) > 2e-5 || Math.abs(a[1] - b[1]) > 2e-5) throw new Error(`${what}: ${a} is not ${b}`);
  };
  await step('a polygon edited with the mouse is stored; an invalid one shows why not', async () => {
    const [w, s, e, n] = [centre[0] - h, centre[1] - h, centre[0] + h, centre[1] + h];
    await api(base, 'PUT', 'api/v1/fences/edit-square', { type: 'Feature', id: 'edit-square',
      geometry: { type: 'Polygon', coordinates: [[[w, s], [e, s], [e, n], [w, n], [w, s]]] }, properties: { name: 'Edit square', keep: 'me' } });
    await show(centre, 15);
    await rendered('Edit square');
    await page.mouse.click(...await pixel(centre));
    await editing('edit-square');
    // The south-west corner dragged east of the square makes its edges cross: the API says no.
    await drag([w, s], await pixel([centre[0] + 3 * h, centre[1]]));
    const logged = errors.length;
    await page.click('#edit-save');
    await hint('not saved: ');
    errors.push(...errors.splice(logged).filter((e) => !e.includes('status of 400'))); // Chromium logs the refused PUT
    if (!(await page.textContent('#draw-hint')).includes('invalid polygon')) throw new Error(await page.textContent('#draw-hint'));
    await page.click('#edit-cancel');
    await page.waitForFunction(() => !window.geotrack.editing());
    await rendered('Edit square'); // hidden while it was edited
    // Again: the south-east corner moves out, the north edge's midpoint becomes a new corner.
    await page.mouse.click(...await pixel(centre));
    await editing('edit-square');
    const corner = await pixel([e + h, s - h]), added = await pixel([centre[0], n + h]);
    await drag([e, s], corner);
    await drag([centre[0], n], added);
    await page.screenshot({ path: `${shots}/edit.png` }); // the handles of the edited shape
    await page.click('#edit-save');
    await hint('saved edit-square');
    const stored = await api(base, 'GET', 'api/v1/fences/edit-square');
    const ring = stored.geometry.coordinates[0];
    if (ring.length !== 6 || stored.properties.keep !== 'me') throw new Error(`stored: ${JSON.stringify(stored)}`);
    near(ring[1], await lngLatAt(corner), 'the moved corner');
    near(ring[3], await lngLatAt(added), 'the added corner');
    near(ring[0], [w, s], 'an untouched corner');
  });
  await step('a circle moved and resized with the mouse is stored', async () => {
    const at = [centre[0] + 0.01, centre[1]];
    await api(base, 'PUT', 'api/v1/fences/edit-circle', { type: 'Feature', id: 'edit-circle',
      geometry: { type: 'Point', coordinates: at }, properties: { name: 'Edit circle', radius_m: 100 } });
    await show(at, 16);
    await rendered('Edit circle');
    const [x, y] = await pixel(at);
    await page.mouse.click(x, y);
    await editing('edit-circle');
    await drag(at, [x + 60, y + 40]);
    const moved = await lngLatAt([x + 60, y + 40]);
    const edge = await page.evaluate(() => window.geotrack.map.getSource('edit-handles').getData())
      .then((d) => d.features.find((f) => f.properties.role === 'radius').geometry.coordinates);
    const [ex, ey] = await pixel(edge);
    await drag(edge, [ex + 50, ey]);
    const radius = await page.evaluate(async ([c, p]) => (await import('/draw.js')).distance(c, window.geotrack.map.unproject(p).toArray()),
      [moved, [ex + 50, ey]]);
    await page.click('#edit-save');
    await hint('saved edit-circle');
    const stored = await api(base, 'GET', 'api/v1/fences/edit-circle');
    near(stored.geometry.coordinates, moved, 'the centre');
    if (Math.abs(stored.properties.radius_m - radius) > 2 || radius < 120) {
      throw new Error(`radius ${stored.properties.radius_m}, expected ${radius}`);
    }
  });

  // Replay: a posted track that ended 70 minutes ago (so the default last hour is empty).
  await step('a track replays under the time slider', async () => {
    const start = Date.now() - 80 * 60000;
    const fixes = Array.from({ length: 11 }, (_, i) => ({ device: 'replay-test', ts: new Date(start + i * 60000).toISOString(),
      lon: 2.2922 + i * 0.001, lat: 48.8166, speed_mps: 10 }));
    const reply = await api(base, 'POST', 'api/v1/positions', fixes);
    if (reply.accepted !== 11) throw new Error(`posted: ${JSON.stringify(reply)}`);
    const last = [fixes[10].lon, fixes[10].lat];
    await show(last, 16);
    await page.waitForFunction((p) => window.geotrack.map.queryRenderedFeatures(p, { layers: ['vehicles'] })
      .some((f) => f.properties.device === 'replay-test'), await pixel(last), { timeout: 15000 });
    await page.mouse.click(...await pixel(last));
    // The popup lists the vehicle's trips of the last 24 hours: these 11 fixes are one trip.
    await page.waitForFunction(() => document.querySelectorAll('.maplibregl-popup .trips li.trip').length === 1,
      null, { timeout: 10000 });
    await page.click('.maplibregl-popup button');
    await page.waitForFunction(() => document.getElementById('replay-at').textContent === 'no fixes in the last hour',
      null, { timeout: 10000 });
    if (!(await page.isDisabled('#replay-play'))) throw new Error('Play is enabled on an empty track');
    await page.selectOption('#replay-window', '21600');
    await page.waitForFunction(() => window.geotrack.replay.state.fixes.length === 11 && !document.getElementById('replay-play').disabled,
      null, { timeout: 10000 });
    const marker = () => page.evaluate(async () => {
      const { state } = window.geotrack.replay;
      const shown = (await window.geotrack.map.getSource('replay').getData()).features[0].geometry.coordinates;
      return { at: state.at, shown, fix: state.fixes[state.at].geometry.coordinates };
    });
    const line = await page.evaluate(async () => (await window.geotrack.map.getSource('track').getData()).features[0].geometry);
    if (line.coordinates.length !== 11) throw new Error(`track line: ${JSON.stringify(line)}`);
    await page.focus('#replay-time');
    await page.keyboard.press('Home');
    let m = await marker();
    if (m.at !== 0) throw new Error(`after Home: ${JSON.stringify(m)}`);
    near(m.shown, [fixes[0].lon, fixes[0].lat], 'the marker at the start');
    await page.keyboard.press('End');
    m = await marker();
    if (m.at !== 10) throw new Error(`after End: ${JSON.stringify(m)}`);
    await page.keyboard.press('Home');
    await page.click('#replay-play'); // 60×: a fix a second
    await page.waitForFunction(() => window.geotrack.replay.state.at >= 2, null, { timeout: 10000 });
    await page.click('#replay-play');
    m = await marker();
    near(m.shown, m.fix, 'the marker while playing');
    await page.screenshot({ path: `${shots}/replay.png` });
  });

  await step('the nearest vehicles to a clicked point are listed and ringed, within a group when one is chosen', async () => {
    const at = [2.3522, 48.9566]; // 11 km north of the demo fleet, clear of the edit tests
    const offsets = [[0.002, 0], [0, 0.004], [-0.008, 0]]; // about 150, 450 and 590 m away
    const fixes = offsets.map(([dx, dy], i) => ({ device: `near-${i + 1}`, ts: new Date().toISOString(),
      lon: at[0] + dx, lat: at[1] + dy }));
    const reply = await api(base, 'POST', 'api/v1/positions', fixes);
    if (reply.accepted !== 3) throw new Error(`posted: ${JSON.stringify(reply)}`);
    // The live index follows the live feed, about a second behind.
    for (let i = 0; ; i += 1) {
      const near = await api(base, 'GET', `api/v1/devices/nearby?lon=${at[0]}&lat=${at[1]}&limit=3`);
      if (near.features.map((f) => f.id).join() === 'near-1,near-2,near-3') break;
      if (i > 100) throw new Error(`the index never listed them: ${JSON.stringify(near)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await show(at, 14);
    await page.selectOption('#nearby-k', '3');
    await page.click('#nearby-pick');
    await page.mouse.click(...await pixel(at));
    await page.waitForFunction(() => document.querySelectorAll('#nearby-list li').length === 3, null, { timeout: 10000 });
    const listed = await page.$$eval('#nearby-list li b', (names) => names.map((b) => b.textContent));
    if (listed.join() !== 'near-1,near-2,near-3') throw new Error(`listed: ${listed}`);
    const drawn = await page.evaluate(async () => (await window.geotrack.map.getSource('nearby').getData()).features
      .filter((f) => f.properties.role === 'vehicle').map((f) => f.properties.device));
    if (drawn.join() !== 'near-1,near-2,near-3') throw new Error(`ringed: ${drawn}`);
    if (await page.evaluate(() => window.geotrack.nearby.picking())) throw new Error('still picking');
    if (await page.$('.maplibregl-popup')) throw new Error('the click also opened a popup');
    await page.screenshot({ path: `${shots}/nearby.png` });
    await page.click('#nearby-clear');

    // A device group narrows the map's vehicles and the nearby tool to its members.
    await api(base, 'PUT', 'api/v1/groups/near-odd', { name: 'Odd ones', devices: ['near-1', 'near-3'] });
    await page.focus('#group'); // the menu reads the groups again when opened
    await page.waitForFunction(() => [...document.querySelectorAll('#group option')].some((o) => o.value === 'near-odd'),
      null, { timeout: 10000 });
    await page.selectOption('#group', 'near-odd');
    await page.waitForFunction(() => [...window.geotrack.state.devices.keys()].sort().join() === 'near-1,near-3',
      null, { timeout: 15000 });
    await page.click('#nearby-pick');
    await page.mouse.click(...await pixel(at));
    await page.waitForFunction(() => [...document.querySelectorAll('#nearby-list li b')].map((b) => b.textContent).join()
      === 'near-1,near-3', null, { timeout: 10000 });
    await page.click('#nearby-clear');
    await page.selectOption('#group', '');
  });

  await step('an alert reaches the panel', () =>
    page.waitForFunction(() => document.querySelectorAll('#alerts li').length > 0, null, { timeout: 60000 }));
  await step('no console error', async () => {
    if (errors.length) throw new Error(errors.join('\n'));
  });
});
// An outside basemap: the server names it in the style's metadata when `[tiles] basemap_style`
// is set (tests/api/styles.rs); here the style and the outside style are answered by the test.
// The map starts from the outside style and puts geotrack's layers, not its basemap, on top.
const outside = await run(browser, `${shots}/basemap.png`, async (page, errors) => {
  const basemapUrl = 'https://basemap.invalid/style.json';
  await page.route(basemapUrl, (r) => r.fulfill({ headers: { 'access-control-allow-origin': '*' }, json: {
    version: 8, sources: {}, layers: [{ id: 'outside-background', type: 'background', paint: { 'background-color': '#e8e0c8' } }] } }));
  await page.route(`${base}styles/default.json*`, async (r) => {
    const style = await (await r.fetch()).json();
    await r.fulfill({ json: { ...style, metadata: { ...style.metadata, 'geotrack:basemap': basemapUrl } } });
  });
  await step('with an outside basemap, the map loads on it with geotrack\'s layers on top', async () => {
    await page.goto(base);
    await page.waitForFunction(() => window.geotrack?.state?.loaded, null, { timeout: 30000 });
    const ids = await page.evaluate(() => window.geotrack.map.getStyle().layers.map((l) => l.id));
    if (ids[0] !== 'outside-background' || ['sea', 'land', 'country-labels'].some((id) => ids.includes(id))
      || !['fences', 'fence-labels', 'vehicles', 'vehicle-labels'].every((id) => ids.includes(id))) {
      throw new Error(`layers: ${ids.join(', ')}`);
    }
  });
  await step('on the outside basemap, fences and labels are drawn', () => page.waitForFunction(() => {
    const drawn = (id) => window.geotrack.map.queryRenderedFeatures({ layers: [id] }).length > 0;
    return drawn('fences') && drawn('fence-labels') && drawn('vehicle-labels');
  }, null, { timeout: 30000 }));
  await step('on the outside basemap, no console error', async () => {
    if (errors.length) throw new Error(errors.join('\n'));
  });
});
await browser.close();
process.exit(ok && outside ? 0 : 1);
