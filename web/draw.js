// Drawing and editing fences on the map through the fence API (admin scope when tokens are on).
// Circle: click the centre, then a point on the edge. Polygon: click the corners, then Finish.
// Delete: click a fence. Edit: click a fence (no mode active) to get handles: drag a corner
// (or a corridor's point), drag an edge's midpoint to add a corner, double-click a corner to
// remove it; a circle's centre moves it and its edge handle resizes it. Save PUTs the Feature
// back, with its other properties untouched. What is stored comes back through /ws/tiles like
// any other write; an error from the API stays in the panel, and the edit stays open to fix.
const $ = (id) => document.getElementById(id);
const EARTH_RADIUS_M = 6371008.8; // the mean radius, as the server's great-circle distance
const RAD = Math.PI / 180;
const FENCE_LAYERS = ['fences', 'fence-edges'];
const IDLE_HINT = 'Click a fence on the map to edit it.';
const collection = (features) => ({ type: 'FeatureCollection', features });
const point = (coordinates, properties = {}) => ({ type: 'Feature', properties, geometry: { type: 'Point', coordinates } });

// Great-circle distance in metres, and the point `metres` away from `from` towards `bearing`.
export function distance([lon1, lat1], [lon2, lat2]) {
  const a = Math.sin(((lat2 - lat1) * RAD) / 2) ** 2
    + Math.cos(lat1 * RAD) * Math.cos(lat2 * RAD) * Math.sin(((lon2 - lon1) * RAD) / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(a)));
}
function destination([lon, lat], metres, bearingDeg) {
  const d = metres / EARTH_RADIUS_M, b = bearingDeg * RAD, p = lat * RAD;
  const p2 = Math.asin(Math.sin(p) * Math.cos(d) + Math.cos(p) * Math.sin(d) * Math.cos(b));
  const l2 = lon * RAD + Math.atan2(Math.sin(b) * Math.sin(d) * Math.cos(p), Math.cos(d) - Math.sin(p) * Math.sin(p2));
  return [l2 / RAD, p2 / RAD];
}

// What went wrong with a request: the fetch error when the server could not be reached, else
// what the API said (`{"error": {"code", "message"}}`), else the status line.
export async function problem(reply) {
  if (reply instanceof Error) return `the server cannot be reached (${reply.message})`;
  const body = await reply.json().catch(() => null);
  const error = body?.error;
  return (typeof error === 'string' ? error : error?.message) ?? `${reply.status} ${reply.statusText}`.trim();
}

// A fence being edited: `rings` are open lists of positions (a polygon's rings, all rings of a
// multipolygon, or a corridor's line), `layout` how many rings each multipolygon part has.
function editable(feature) {
  const { type, coordinates } = feature.geometry ?? {};
  const open = (ring) => ring.slice(0, -1);
  const base = { id: feature.id, properties: feature.properties ?? {}, type };
  if (type === 'Point' && feature.properties?.radius_m > 0) {
    return { ...base, centre: coordinates.slice(0, 2), radius: feature.properties.radius_m };
  }
  if (type === 'Polygon') return { ...base, closed: true, rings: coordinates.map(open) };
  if (type === 'MultiPolygon') {
    return { ...base, closed: true, rings: coordinates.flat().map(open), layout: coordinates.map((p) => p.length) };
  }
  if (type === 'LineString') return { ...base, closed: false, rings: [coordinates] };
  return null;
}
const round = ([lon, lat]) => [Number(lon.toFixed(7)), Number(lat.toFixed(7))];
function geometryOf(edit) {
  if (edit.centre) return { type: 'Point', coordinates: round(edit.centre) };
  const rings = edit.rings.map((r) => r.map(round));
  const close = (ring) => [...ring, ring[0]];
  if (edit.type === 'Polygon') return { type: 'Polygon', coordinates: rings.map(close) };
  if (edit.type === 'LineString') return { type: 'LineString', coordinates: rings[0] };
  let next = 0;
  const parts = edit.layout.map((count) => rings.slice(next, (next += count)).map(close));
  return { type: 'MultiPolygon', coordinates: parts };
}
function outline(edit) {
  if (edit.centre) {
    const ring = Array.from({ length: 65 }, (_, i) => destination(edit.centre, edit.radius, (i * 360) / 64));
    return { type: 'Feature', properties: {}, geometry: { type: 'Polygon', coordinates: [ring] } };
  }
  return { type: 'Feature', properties: {}, geometry: geometryOf(edit) };
}
function handles(edit) {
  if (edit.centre) {
    return [point(edit.centre, { role: 'centre' }), point(destination(edit.centre, edit.radius, 90), { role: 'radius' })];
  }
  const out = [];
  edit.rings.forEach((ring, r) => ring.forEach((at, i) => {
    out.push(point(at, { role: 'vertex', ring: r, index: i }));
    const next = ring[i + 1] ?? (edit.closed ? ring[0] : null);
    if (next) out.push(point([(at[0] + next[0]) / 2, (at[1] + next[1]) / 2], { role: 'midpoint', ring: r, index: i }));
  }));
  return out;
}

// `busy()`: another tool takes map clicks for now (the nearby tool picking a point).
export function enableDrawing(map, authHeaders, busy = () => false) {
  let mode = null;
  let points = [];
  let edit = null; // the fence being edited
  let drag = null; // the handle being dragged
  let selecting = 0; // the latest fence asked for, so a slow answer cannot win over a newer click
  map.addSource('draft', { type: 'geojson', data: collection([]) });
  map.addLayer({ id: 'draft', type: 'line', source: 'draft', paint: { 'line-color': '#d35400', 'line-width': 2, 'line-dasharray': [2, 1] } });
  map.addLayer({ id: 'draft-points', type: 'circle', source: 'draft', filter: ['==', ['geometry-type'], 'Point'],
    paint: { 'circle-radius': 4, 'circle-color': '#d35400' } });
  map.addSource('edit-shape', { type: 'geojson', data: collection([]) });
  map.addSource('edit-handles', { type: 'geojson', data: collection([]) });
  map.addLayer({ id: 'edit-fill', type: 'fill', source: 'edit-shape', filter: ['in', ['geometry-type'], ['literal', ['Polygon', 'MultiPolygon']]],
    paint: { 'fill-color': '#d35400', 'fill-opacity': 0.15 } });
  map.addLayer({ id: 'edit-line', type: 'line', source: 'edit-shape', paint: { 'line-color': '#d35400', 'line-width': 2 } });
  map.addLayer({ id: 'edit-handles', type: 'circle', source: 'edit-handles',
    paint: { 'circle-radius': ['match', ['get', 'role'], 'midpoint', 4, 6],
      'circle-color': ['match', ['get', 'role'], 'midpoint', '#f6c9a8', '#fff'],
      'circle-stroke-color': '#d35400', 'circle-stroke-width': 2 } });
  const tileFilters = Object.fromEntries(FENCE_LAYERS.map((id) => [id, map.getFilter(id) ?? null]));
  window.geotrack.editing = () => edit; // for tests: the fence being edited, if any

  const hint = (text) => { $('draw-hint').textContent = text; };
  const preview = () => {
    const features = points.map((p) => point(p));
    if (points.length > 1) {
      features.push({ type: 'Feature', properties: {}, geometry: { type: 'LineString', coordinates: points } });
    }
    map.getSource('draft').setData(collection(features));
  };
  const start = (next, text) => {
    selecting += 1; // a fence asked for before a mode was chosen is not opened after it
    close();
    mode = mode === next ? null : next;
    points = [];
    preview();
    for (const id of ['draw-circle', 'draw-polygon', 'draw-delete']) $(id).classList.toggle('active', `draw-${mode}` === id);
    $('draw-finish').hidden = mode !== 'polygon';
    map.getCanvas().style.cursor = mode ? 'crosshair' : '';
    hint(mode ? text : IDLE_HINT);
  };
  const name = () => $('fence-name').value.trim() || `Drawn ${mode}`;
  // `etag`: the version the editor opened (If-Match), so a fence someone else changed since is
  // not overwritten (412).
  const send = (method, id, feature, etag) => fetch(`/api/v1/fences${id ? `/${encodeURIComponent(id)}` : ''}`, {
    method,
    headers: { 'content-type': 'application/json', ...authHeaders(), ...(etag ? { 'if-match': etag } : {}) },
    body: feature && JSON.stringify(feature) })
    .catch((e) => e); // a network failure is reported like a refusal
  const save = async (feature) => {
    const reply = await send('POST', null, feature);
    const text = reply.ok ? `stored as ${(await reply.json()).id}` : `not stored: ${await problem(reply)}`;
    start(null, '');
    hint(text);
  };
  const STALE = 'someone changed this fence since you opened it; open it again';
  const remove = async (id, etag) => {
    const reply = await send('DELETE', id, null, etag);
    const text = reply.ok ? `deleted ${id}` : `not deleted: ${reply.status === 412 ? STALE : await problem(reply)}`;
    start(null, '');
    hint(text);
  };

  // Editing: the handles and the outline follow `edit`; the fence's own tile feature is hidden
  // meanwhile so the old shape does not show under the new one.
  const render = () => {
    map.getSource('edit-shape').setData(collection(edit ? [outline(edit)] : []));
    map.getSource('edit-handles').setData(collection(edit ? handles(edit) : []));
    if (edit?.centre && document.activeElement !== $('edit-radius')) $('edit-radius').value = Math.round(edit.radius);
  };
  const showTileFence = (hiddenId) => {
    for (const layer of FENCE_LAYERS) {
      const hide = hiddenId == null ? null : ['!=', ['get', 'id'], hiddenId];
      map.setFilter(layer, tileFilters[layer] && hide ? ['all', tileFilters[layer], hide] : (hide ?? tileFilters[layer]));
    }
  };
  function close() {
    if (!edit) return;
    edit = null;
    drag = null;
    $('edit').hidden = true;
    showTileFence(null);
    render();
  }
  const select = async (id) => {
    const ticket = ++selecting;
    const reply = await fetch(`/api/v1/fences/${encodeURIComponent(id)}`, { headers: authHeaders() }).catch((e) => e);
    if (ticket !== selecting) return;
    if (!reply.ok) { hint(`cannot edit ${id}: ${await problem(reply)}`); return; }
    const etag = reply.headers.get('etag');
    const next = editable(await reply.json());
    if (ticket !== selecting) return;
    if (!next) { hint(`${id} has no geometry this editor can change`); return; }
    close();
    edit = { ...next, etag };
    $('edit-name').textContent = edit.properties.name ?? edit.id;
    $('edit-help').textContent = edit.centre
      ? 'drag the centre to move it, the edge handle (or the field) to resize it.'
      : `drag a ${edit.closed ? 'corner' : 'point'} to move it, a midpoint to add one, double-click one to remove it.`;
    $('edit-radius-field').hidden = !edit.centre;
    $('edit').hidden = false;
    showTileFence(edit.id);
    render();
    hint('');
  };

  const grab = (e) => {
    const h = edit && e.features?.[0]?.properties;
    if (!h) return;
    e.preventDefault(); // no map panning while a handle is dragged
    if (h.role === 'midpoint') {
      edit.rings[h.ring].splice(h.index + 1, 0, [e.lngLat.lng, e.lngLat.lat]);
      drag = { role: 'vertex', ring: h.ring, index: h.index + 1 };
    } else {
      drag = { role: h.role, ring: h.ring, index: h.index };
    }
    map.getCanvas().style.cursor = 'grabbing';
    render();
  };
  const move = (e) => {
    if (!drag) return;
    const at = [e.lngLat.lng, e.lngLat.lat];
    if (drag.role === 'vertex') edit.rings[drag.ring][drag.index] = at;
    if (drag.role === 'centre') edit.centre = at;
    if (drag.role === 'radius') edit.radius = Math.max(1, distance(edit.centre, at));
    render();
  };
  const drop = () => {
    if (!drag) return;
    drag = null;
    map.getCanvas().style.cursor = '';
  };
  map.on('mousedown', 'edit-handles', grab);
  map.on('touchstart', 'edit-handles', (e) => { if (e.points.length === 1) grab(e); });
  map.on('mousemove', move);
  map.on('touchmove', move);
  window.addEventListener('mouseup', drop); // also when the button is let go off the map
  map.on('touchend', drop);
  map.on('mouseenter', 'edit-handles', () => { if (!drag) map.getCanvas().style.cursor = 'move'; });
  map.on('mouseleave', 'edit-handles', () => { if (!drag) map.getCanvas().style.cursor = mode ? 'crosshair' : ''; });
  map.on('dblclick', 'edit-handles', (e) => {
    const h = e.features[0].properties;
    e.preventDefault(); // no zoom
    if (h.role !== 'vertex') return;
    const ring = edit.rings[h.ring];
    if (ring.length <= (edit.closed ? 3 : 2)) { hint(`a ${edit.closed ? 'ring needs three corners' : 'corridor needs two points'}`); return; }
    ring.splice(h.index, 1);
    render();
  });
  $('edit-radius').oninput = () => {
    const radius = Number($('edit-radius').value);
    if (edit?.centre && radius > 0) { edit.radius = radius; render(); }
  };
  $('edit-save').onclick = async () => {
    const { id, properties } = edit;
    const feature = { type: 'Feature', id, geometry: geometryOf(edit),
      properties: edit.centre ? { ...properties, radius_m: Math.round(edit.radius * 10) / 10 } : properties };
    $('edit-save').disabled = true;
    const reply = await send('PUT', id, feature, edit.etag).finally(() => { $('edit-save').disabled = false; });
    if (!reply.ok) { hint(`not saved: ${reply.status === 412 ? STALE : await problem(reply)}`); return; }
    close();
    hint(`saved ${id}`);
  };
  $('edit-cancel').onclick = () => { close(); hint(IDLE_HINT); };
  $('edit-delete').onclick = () => remove(edit.id, edit.etag);
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && edit && !drag) { close(); hint(IDLE_HINT); } });

  $('draw-circle').onclick = () => start('circle', 'click the centre, then a point on the edge');
  $('draw-polygon').onclick = () => start('polygon', 'click the corners, then Finish');
  $('draw-delete').onclick = () => start('delete', 'click the fence to delete');
  $('draw-finish').onclick = () => {
    if (points.length < 3) { hint('a polygon needs three corners'); return; }
    save({ type: 'Feature', geometry: { type: 'Polygon', coordinates: [[...points, points[0]]] },
      properties: { name: name() } });
  };

  map.on('click', (e) => {
    if (busy()) return;
    const at = [e.lngLat.lng, e.lngLat.lat];
    if (mode === 'polygon') { points.push(at); preview(); return; }
    if (mode === 'circle') {
      points.push(at);
      preview();
      if (points.length < 2) return;
      const [c, edge] = points;
      save({ type: 'Feature', geometry: { type: 'Point', coordinates: c },
        properties: { name: name(), radius_m: Math.max(1, Math.round(distance(c, edge))) } });
      return;
    }
    const on = (layers) => map.queryRenderedFeatures(e.point, { layers })[0];
    if (mode === 'delete') {
      const hit = on(['fences']);
      if (hit) remove(hit.properties.id); else hint('no fence there');
      return;
    }
    // No mode: a click on a fence edits it, unless it hit a vehicle (its popup) or a handle.
    if (on(['vehicles', 'edit-handles'])) return;
    const hit = on(['fences']);
    if (hit && hit.properties.id !== edit?.id) select(hit.properties.id);
  });
}
