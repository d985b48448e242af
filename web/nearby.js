// The dispatcher's first question on the map: which vehicles are nearest to this point? "Pick
// a point", then a click on the map lists the nearest vehicles (GET /api/v1/devices/nearby)
// with their distances, rings them on the map and draws a line from the point to each; a click
// on an entry centres the map on that vehicle. While a point is being picked, other tools
// ignore map clicks (`picking()`).
import { problem } from '/draw.js';

const $ = (id) => document.getElementById(id);
const collection = (features) => ({ type: 'FeatureCollection', features });
const point = (coordinates, properties) => ({ type: 'Feature', properties, geometry: { type: 'Point', coordinates } });
const distanceText = (m) => (m < 1000 ? `${Math.round(m)} m` : `${(m / 1000).toFixed(m < 10000 ? 2 : 1)} km`);

// `groupParam()`: `&group=ID` while the map shows one device group, else empty.
export function enableNearby(map, authHeaders, groupParam = () => '') {
  const state = { picking: false, at: null, found: [] };
  map.addSource('nearby', { type: 'geojson', data: collection([]) });
  map.addLayer({ id: 'nearby-lines', type: 'line', source: 'nearby', filter: ['==', ['geometry-type'], 'LineString'],
    paint: { 'line-color': '#1f5fb8', 'line-width': 2, 'line-dasharray': [2, 2] } });
  map.addLayer({ id: 'nearby-rings', type: 'circle', source: 'nearby', filter: ['==', ['get', 'role'], 'vehicle'],
    paint: { 'circle-radius': 11, 'circle-opacity': 0, 'circle-stroke-color': '#1f5fb8', 'circle-stroke-width': 3 } });
  map.addLayer({ id: 'nearby-point', type: 'circle', source: 'nearby', filter: ['==', ['get', 'role'], 'point'],
    paint: { 'circle-radius': 5, 'circle-color': '#1f5fb8', 'circle-stroke-color': '#fff', 'circle-stroke-width': 2 } });
  const say = (text) => { $('nearby-hint').textContent = text; };
  const pick = (on) => {
    state.picking = on;
    $('nearby-pick').classList.toggle('active', on);
    map.getCanvas().style.cursor = on ? 'crosshair' : '';
    if (on) say('Click the map where the vehicles are needed.');
  };
  const clear = () => {
    state.at = null;
    state.found = [];
    map.getSource('nearby').setData(collection([]));
    $('nearby-list').replaceChildren();
    say('');
  };

  const search = async (at) => {
    const k = $('nearby-k').value;
    const url = `/api/v1/devices/nearby?lon=${at[0].toFixed(6)}&lat=${at[1].toFixed(6)}&limit=${k}${groupParam()}`;
    const reply = await fetch(url, { headers: authHeaders() }).catch((e) => e);
    if (!reply.ok) { say(`cannot search: ${await problem(reply)}`); return; }
    state.at = at;
    state.found = (await reply.json()).features;
    const features = [point(at, { role: 'point' })];
    for (const f of state.found) {
      features.push(point(f.geometry.coordinates, { role: 'vehicle', device: f.id }));
      features.push({ type: 'Feature', properties: { device: f.id }, geometry: { type: 'LineString', coordinates: [at, f.geometry.coordinates] } });
    }
    map.getSource('nearby').setData(collection(features));
    $('nearby-list').replaceChildren(...state.found.map((f) => {
      const li = document.createElement('li');
      const speed = f.properties.speed_mps == null ? '' : ` · ${(f.properties.speed_mps * 3.6).toFixed(0)} km/h`;
      li.innerHTML = '<b></b> <span></span>';
      li.querySelector('b').textContent = f.id;
      li.querySelector('span').textContent = `${distanceText(f.properties.distance_m)}${speed}`;
      li.onclick = () => map.flyTo({ center: f.geometry.coordinates, zoom: Math.max(map.getZoom(), 15) });
      return li;
    }));
    say(state.found.length ? `${state.found.length} nearest, closest first:` : 'no vehicle has reported yet');
  };

  $('nearby-pick').onclick = () => pick(!state.picking);
  $('nearby-clear').onclick = clear;
  map.on('click', (e) => {
    if (!state.picking) return;
    // Picking ends after every listener has seen this click (they skip it while picking).
    setTimeout(() => pick(false), 0);
    search([e.lngLat.lng, e.lngLat.lat]);
  });
  return { state, picking: () => state.picking };
}
