// The live fleet map: MapLibre GL JS (vendored), the countries basemap, fences from the
// `fences` vector tiles (refetched when /ws/tiles says they changed), vehicles from
// /ws/positions (moving smoothly between updates) and an alerts panel from /ws/alerts that
// resumes from its cursor after a reconnect. Fences are drawn and edited in draw.js; the nearest
// vehicles to a point are listed by nearby.js; a vehicle's popup lists its trips (trips.js) and
// opens its track replay (replay.js). No framework, no external requests (but the outside
// basemap, when the server names one).
import * as maplibregl from '/vendor/maplibre-gl.mjs';
import { enableDrawing } from '/draw.js';
import { enableNearby } from '/nearby.js';
import { enableReplay } from '/replay.js';
import { tripList } from '/trips.js';

const params = new URLSearchParams(location.search);
if (params.get('token')) localStorage.setItem('geotrack.token', params.get('token'));
const token = localStorage.getItem('geotrack.token') || '';
const withToken = (url) => token ? `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}` : url;
const wsUrl = (path) => withToken(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`);
const $ = (id) => document.getElementById(id);
const authHeaders = () => (token ? { authorization: `Bearer ${token}` } : {});

const state = { devices: new Map(), alerts: 0, sockets: {}, open: {}, loaded: false, animating: false, group: '' };
const groupParam = () => (state.group ? `&group=${encodeURIComponent(state.group)}` : '');

// The server's default style (basemap, fences and positions tiles, labels); vehicles are added
// on load from the live socket instead of the one-second positions tiles. When the server is
// configured with an outside basemap (`[tiles] basemap_style`, named in the style's metadata),
// the map starts from that style and puts geotrack's own layers on top of it.
const ownStyle = await fetch(withToken(`${location.origin}/styles/default.json`)).then((r) => r.json());
const basemap = ownStyle.metadata?.['geotrack:basemap'];
const map = new maplibregl.Map({ container: 'map', style: basemap ?? ownStyle,
  transformStyle: basemap ? (_, base) => onTop(base, ownStyle) : undefined });
window.geotrack = { map, state }; // for tests and the curious

// `base` (an outside style) with the layers of `own` that are not its basemap, and their
// sources, on top; `own`'s view. The base keeps its glyphs (labels use its fonts) if it has any.
function onTop(base, own) {
  const layers = own.layers.filter((l) => !l.metadata?.['geotrack:basemap']);
  const sources = Object.fromEntries(Object.entries(own.sources).filter(([id]) => layers.some((l) => l.source === id)));
  return { ...base, center: own.center, zoom: own.zoom, glyphs: base.glyphs ?? own.glyphs,
    sources: { ...base.sources, ...sources }, layers: [...base.layers, ...layers] };
}

function status() {
  const live = Object.entries(state.sockets).filter(([, up]) => up).map(([name]) => name);
  $('status').textContent = `${state.devices.size} vehicles · ${state.alerts} alerts · live: ${live.join(', ') || 'none'}`;
}

// Reconnects with a backoff; `open` builds the URL each time (so it can carry a cursor).
function keepOpen(name, url, onMessage) {
  let delay = 500;
  const connect = () => {
    const ws = new WebSocket(url());
    ws.onopen = () => { delay = 500; state.sockets[name] = true; status(); };
    ws.onmessage = (e) => onMessage(JSON.parse(e.data), ws);
    ws.onclose = (e) => {
      state.sockets[name] = false; status();
      setTimeout(connect, delay); delay = Math.min(delay * 2, 10000);
    };
    state.open[name] = ws;
  };
  connect();
}

// Vehicles: each update moves a vehicle from where it is drawn to its new position in 1 s.
function place(p) {
  const now = performance.now();
  const known = state.devices.get(p.device);
  const from = known ? current(known, now) : p.position;
  state.devices.set(p.device, { ...p, from, to: p.position, start: now });
  if (!state.animating) { state.animating = true; requestAnimationFrame(draw); }
}
function current(v, now) {
  const t = Math.min(1, (now - v.start) / 1000);
  return [v.from[0] + (v.to[0] - v.from[0]) * t, v.from[1] + (v.to[1] - v.from[1]) * t];
}
function draw() {
  const now = performance.now();
  const features = [];
  for (const v of state.devices.values()) {
    const at = current(v, now);
    const properties = { device: v.device, ts: v.ts, speed_mps: v.speed_mps, heading_deg: v.heading_deg };
    features.push({ type: 'Feature', id: v.device, properties, geometry: { type: 'Point', coordinates: at } });
    if (v.heading_deg != null) { // a short stroke in the direction of travel
      const a = (v.heading_deg * Math.PI) / 180, d = 0.0009;
      const tip = [at[0] + (d * Math.sin(a)) / Math.cos((at[1] * Math.PI) / 180), at[1] + d * Math.cos(a)];
      features.push({ type: 'Feature', properties, geometry: { type: 'LineString', coordinates: [at, tip] } });
    }
  }
  map.getSource('vehicles')?.setData({ type: 'FeatureCollection', features });
  // Frames only while something glides, so an idle map does no work.
  const moving = [...state.devices.values()].some((v) => now - v.start < 1000);
  if (moving) requestAnimationFrame(draw); else state.animating = false;
}

function view() {
  const b = map.getBounds();
  const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));
  const w = b.getWest(), e = b.getEast();
  const world = e - w >= 360;
  return [world ? -180 : ((w + 540) % 360) - 180, clamp(b.getSouth(), -90, 90),
          world ? 180 : ((e + 540) % 360) - 180, clamp(b.getNorth(), -90, 90)];
}

map.on('load', () => {
  state.loaded = true;
  for (const id of ['positions', 'position-labels']) map.setLayoutProperty(id, 'visibility', 'none');
  map.addSource('vehicles', { type: 'geojson', data: { type: 'FeatureCollection', features: [] } });
  map.addLayer({ id: 'vehicles', type: 'circle', source: 'vehicles', filter: ['==', ['geometry-type'], 'Point'],
    paint: { 'circle-radius': 6, 'circle-color': '#e4572e', 'circle-stroke-color': '#fff', 'circle-stroke-width': 2 } });
  map.addLayer({ id: 'headings', type: 'line', source: 'vehicles', filter: ['==', ['geometry-type'], 'LineString'],
    paint: { 'line-color': '#e4572e', 'line-width': 2 } });
  // Vehicle ids from close enough in; overlapping labels are left out rather than stacked.
  map.addLayer({ id: 'vehicle-labels', type: 'symbol', source: 'vehicles', minzoom: 12, filter: ['==', ['geometry-type'], 'Point'],
    layout: { 'text-field': ['get', 'device'], 'text-font': ['Noto Sans Regular'], 'text-size': 11, 'text-anchor': 'top',
      'text-offset': [0, 0.8] },
    paint: { 'text-color': '#3a2a22', 'text-halo-color': '#ffffff', 'text-halo-width': 1.2 } });
  window.geotrack.replay = enableReplay(map, authHeaders);
  window.geotrack.nearby = enableNearby(map, authHeaders, groupParam);
  enableDrawing(map, authHeaders, window.geotrack.nearby.picking);
  keepOpen('positions', () => wsUrl(`/ws/positions?bbox=${view().join(',')}${groupParam()}`), (m) => {
    if (m.type === 'snapshot') {
      const seen = new Set(m.positions.map((p) => p.device));
      for (const d of state.devices.keys()) if (!seen.has(d)) state.devices.delete(d);
    }
    if (m.type === 'snapshot' || m.type === 'positions') { m.positions.forEach(place); status(); }
    if (m.type === 'snapshot' && !state.animating) { state.animating = true; requestAnimationFrame(draw); }
  });
  map.on('moveend', () => {
    const ws = state.open.positions;
    if (ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ bbox: view() }));
  });
  keepOpen('tiles', () => wsUrl('/ws/tiles'), (m) => {
    if (m.type === 'changed' && (m.layer === 'fences' || m.layer === '*')) {
      map.getSource('fences').setUrl(withToken(`${location.origin}/tiles/fences?v=${Date.now()}`));
    }
  });
  let cursor = null;
  keepOpen('alerts', () => wsUrl(cursor == null ? '/ws/alerts' : `/ws/alerts?since=${cursor}`), (m) => {
    if (m.type === 'live' && cursor == null) {
      cursor = m.cursor;
      // First connection: show the latest alerts from before the page opened.
      fetch(`/api/v1/alerts?since=${Math.max(0, m.cursor - 20)}&limit=20`,
        { headers: authHeaders() })
        .then((r) => (r.ok ? r.json() : { alerts: [] }))
        .then((page) => page.alerts.filter((a) => !$('alerts').querySelector(`[data-id="${a.id}"]`))
          .forEach((a) => show(a, true)));
    }
    if (m.type === 'lagged') cursor = m.resume_from;
    if (m.type !== 'alert') return;
    cursor = m.id;
    show(m, false);
  });
});

// Adds an alert to the panel: newest first; `older` ones (history) go below the live ones.
function show(m, older) {
  state.alerts += 1;
  const li = document.createElement('li');
  li.className = m.kind;
  li.dataset.id = m.id;
  // A proximity alert names the other device and how far it is; a fence alert the fence.
  const where = m.other ? `${m.other} (${Math.round(m.distance_m)} m)` : (m.fence_name || m.fence || '');
  li.innerHTML = `<b></b> <span></span><time></time>`;
  li.querySelector('b').textContent = m.device;
  li.querySelector('span').textContent = `${m.kind}${where ? ' · ' + where : ''}`;
  li.querySelector('time').textContent = new Date(m.ts).toLocaleTimeString();
  const list = $('alerts');
  const after = older && [...list.children].find((other) => Number(other.dataset.id) < m.id);
  if (older && !after) list.append(li); else list.insertBefore(li, older ? after : list.firstChild);
  while (list.children.length > 100) list.lastChild.remove();
  status();
}

map.on('click', 'vehicles', (e) => {
  if (window.geotrack.nearby?.picking()) return; // the click picks a point, not a vehicle
  const p = e.features[0].properties;
  const speed = p.speed_mps == null ? '?' : `${(p.speed_mps * 3.6).toFixed(0)} km/h`;
  const details = document.createElement('div');
  details.textContent = `${p.device} · ${speed} · last seen ${new Date(p.ts).toLocaleTimeString()} `;
  const button = document.createElement('button');
  button.type = 'button';
  button.textContent = 'Track';
  details.append(button, tripList(p.device, authHeaders));
  const popup = new maplibregl.Popup().setLngLat(e.lngLat).setDOMContent(details).addTo(map);
  button.onclick = () => { popup.remove(); window.geotrack.replay.open(p.device); };
});

// The group filter: the vehicles of one device group (GET /api/v1/groups), on the map and in
// the nearby tool. The list is read again whenever the menu is opened.
async function listGroups() {
  const reply = await fetch('/api/v1/groups', { headers: authHeaders() }).catch(() => null);
  if (!reply?.ok) return;
  const { groups } = await reply.json();
  const select = $('group');
  const options = groups.map((g) => Object.assign(document.createElement('option'), { value: g.id, textContent: g.name || g.id }));
  select.replaceChildren(select.options[0], ...options);
  select.value = groups.some((g) => g.id === state.group) ? state.group : '';
}
$('group').addEventListener('focus', listGroups);
$('group').addEventListener('change', (e) => {
  state.group = e.target.value;
  state.devices.clear(); // the next snapshot brings the group's vehicles
  map.getSource('vehicles')?.setData({ type: 'FeatureCollection', features: [] });
  state.open.positions?.close(); // reconnects at once with the group in its URL
  status();
});
listGroups();

$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  localStorage.setItem('geotrack.token', $('token').value);
  location.reload();
});
// A socket refused for want of a token only shows as a failed connection: ask the API.
fetch(withToken('/tiles')).then((r) => { if (r.status === 401 || r.status === 403) $('login').hidden = false; });
status();
