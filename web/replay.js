// Track replay: a device's history for a window (the last hour unless another is chosen) from
// GET /api/v1/devices/{id}/track as GeoJSON, drawn as a line; a time slider puts a marker on
// the fix at or just before the chosen time, and Play moves it along at the chosen speed.
import { problem } from '/draw.js';

const $ = (id) => document.getElementById(id);
const collection = (features) => ({ type: 'FeatureCollection', features });

export function enableReplay(map, authHeaders) {
  // `fixes` are the track's Point features in time order, `times` their ms timestamps.
  const state = { device: null, fixes: [], times: [], at: -1, playing: false };
  let request = 0; // the latest track asked for, so a slow answer cannot overwrite a newer one
  map.addSource('track', { type: 'geojson', data: collection([]) });
  map.addSource('replay', { type: 'geojson', data: collection([]) });
  map.addLayer({ id: 'track', type: 'line', source: 'track', paint: { 'line-color': '#6a3d9a', 'line-width': 3, 'line-opacity': 0.8 } });
  map.addLayer({ id: 'replay', type: 'circle', source: 'replay',
    paint: { 'circle-radius': 7, 'circle-color': '#6a3d9a', 'circle-stroke-color': '#fff', 'circle-stroke-width': 2 } });
  const slider = $('replay-time');
  const say = (text) => { $('replay-at').textContent = text; };
  const clock = (ms) => new Date(ms).toLocaleTimeString();

  // The fix at or just before `t` (the first one before the track starts).
  const fixAt = (t) => {
    let lo = 0, hi = state.times.length - 1;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (state.times[mid] <= t) lo = mid; else hi = mid - 1;
    }
    return lo;
  };
  const show = (t) => {
    state.at = fixAt(t);
    const fix = state.fixes[state.at];
    map.getSource('replay').setData(collection([fix]));
    const speed = fix.properties.speed_mps == null ? '' : ` · ${(fix.properties.speed_mps * 3.6).toFixed(0)} km/h`;
    say(`${clock(t)}: fix ${state.at + 1} of ${state.fixes.length} at ${clock(state.times[state.at])}${speed}`);
  };
  const pause = () => { state.playing = false; $('replay-play').textContent = 'Play'; };
  const play = () => {
    if (Number(slider.value) >= Number(slider.max)) slider.value = slider.min; // from the start again
    state.playing = true;
    $('replay-play').textContent = 'Pause';
    let last = performance.now();
    const frame = (now) => {
      if (!state.playing) return;
      const t = Math.min(Number(slider.max), Number(slider.value) + (now - last) * Number($('replay-speed').value));
      last = now;
      slider.value = t;
      show(t);
      if (t >= Number(slider.max)) pause(); else requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  };

  const load = async () => {
    const ticket = ++request;
    pause();
    const seconds = Number($('replay-window').value);
    const from = new Date(Date.now() - seconds * 1000).toISOString();
    const url = `/api/v1/devices/${encodeURIComponent(state.device)}/track?format=geojson&from=${encodeURIComponent(from)}`;
    say('loading…');
    const reply = await fetch(url, { headers: authHeaders() }).catch((e) => e);
    const failure = reply.ok ? null : await problem(reply);
    const track = failure ? null : await reply.json().catch(() => null);
    if (ticket !== request) return;
    state.fixes = track?.features ?? [];
    state.times = state.fixes.map((f) => Date.parse(f.properties.ts));
    state.at = -1;
    const line = state.fixes.map((f) => f.geometry.coordinates);
    map.getSource('track').setData(collection(line.length > 1
      ? [{ type: 'Feature', properties: {}, geometry: { type: 'LineString', coordinates: line } }] : []));
    map.getSource('replay').setData(collection([]));
    const empty = state.fixes.length === 0;
    for (const id of ['replay-time', 'replay-play']) $(id).disabled = empty;
    if (empty) {
      const span = $('replay-window').selectedOptions[0].textContent;
      say(failure || !track ? `no track: ${failure ?? 'the answer was not GeoJSON'}` : `no fixes in the ${span}`);
      return;
    }
    slider.min = state.times[0];
    slider.max = state.times[state.times.length - 1];
    slider.value = slider.max; // where the device is now; Play starts over from the beginning
    show(Number(slider.value));
    const bounds = line.reduce(([w, s, e, n], [lon, lat]) =>
      [Math.min(w, lon), Math.min(s, lat), Math.max(e, lon), Math.max(n, lat)], [Infinity, Infinity, -Infinity, -Infinity]);
    map.fitBounds(bounds, { padding: 60, maxZoom: 16, duration: 0 });
  };

  slider.addEventListener('input', () => { pause(); show(Number(slider.value)); });
  $('replay-play').onclick = () => (state.playing ? pause() : play());
  $('replay-window').onchange = load;
  $('replay-close').onclick = () => {
    request += 1;
    pause();
    state.device = null;
    $('replay').hidden = true;
    for (const source of ['track', 'replay']) map.getSource(source).setData(collection([]));
  };

  return {
    state,
    // Shows the track of `device` in the panel.
    open(device) {
      state.device = device;
      $('replay-device').textContent = device;
      $('replay').hidden = false;
      load();
    },
  };
}
