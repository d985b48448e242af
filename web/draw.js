// Drawing fences on the map through the fence API (admin scope when tokens are on):
// Circle: click the centre, then a point on the edge. Polygon: click the corners, then Finish.
// Delete: click a fence. What is stored comes back through /ws/tiles like any other write.
const $ = (id) => document.getElementById(id);
const METRES_PER_DEGREE = 111320;

export function enableDrawing(map, authHeaders) {
  let mode = null;
  let points = [];
  map.addSource('draft', { type: 'geojson', data: { type: 'FeatureCollection', features: [] } });
  map.addLayer({ id: 'draft', type: 'line', source: 'draft', paint: { 'line-color': '#d35400', 'line-width': 2, 'line-dasharray': [2, 1] } });
  map.addLayer({ id: 'draft-points', type: 'circle', source: 'draft', filter: ['==', ['geometry-type'], 'Point'],
    paint: { 'circle-radius': 4, 'circle-color': '#d35400' } });

  const hint = (text) => { $('draw-hint').textContent = text; };
  const preview = () => {
    const features = points.map((p) => ({ type: 'Feature', properties: {}, geometry: { type: 'Point', coordinates: p } }));
    if (points.length > 1) {
      features.push({ type: 'Feature', properties: {}, geometry: { type: 'LineString', coordinates: points } });
    }
    map.getSource('draft').setData({ type: 'FeatureCollection', features });
  };
  const start = (next, text) => {
    mode = mode === next ? null : next;
    points = [];
    preview();
    for (const id of ['draw-circle', 'draw-polygon', 'draw-delete']) $(id).classList.toggle('active', `draw-${mode}` === id);
    $('draw-finish').hidden = mode !== 'polygon';
    map.getCanvas().style.cursor = mode ? 'crosshair' : '';
    hint(mode ? text : '');
  };
  const name = () => $('fence-name').value.trim() || `Drawn ${mode}`;
  const save = async (feature) => {
    const reply = await fetch('/api/v1/fences', { method: 'POST', headers: { 'content-type': 'application/json', ...authHeaders() },
      body: JSON.stringify(feature) });
    const body = await reply.json().catch(() => ({}));
    start(null, '');
    hint(reply.ok ? `stored as ${body.id}` : `not stored: ${body.error?.message ?? reply.status}`);
  };

  $('draw-circle').onclick = () => start('circle', 'click the centre, then a point on the edge');
  $('draw-polygon').onclick = () => start('polygon', 'click the corners, then Finish');
  $('draw-delete').onclick = () => start('delete', 'click the fence to delete');
  $('draw-finish').onclick = () => {
    if (points.length < 3) { hint('a polygon needs three corners'); return; }
    save({ type: 'Feature', geometry: { type: 'Polygon', coordinates: [[...points, points[0]]] },
      properties: { name: name() } });
  };

  map.on('click', async (e) => {
    const at = [e.lngLat.lng, e.lngLat.lat];
    if (mode === 'polygon') { points.push(at); preview(); return; }
    if (mode === 'circle') {
      points.push(at);
      preview();
      if (points.length < 2) return;
      const [c, edge] = points;
      const dx = (edge[0] - c[0]) * METRES_PER_DEGREE * Math.cos((c[1] * Math.PI) / 180);
      const dy = (edge[1] - c[1]) * METRES_PER_DEGREE;
      save({ type: 'Feature', geometry: { type: 'Point', coordinates: c },
        properties: { name: name(), radius_m: Math.max(1, Math.round(Math.hypot(dx, dy))) } });
      return;
    }
    if (mode === 'delete') {
      const hit = map.queryRenderedFeatures(e.point, { layers: ['fences'] })[0];
      if (!hit) { hint('no fence there'); return; }
      const id = hit.properties.id;
      const reply = await fetch(`/api/v1/fences/${encodeURIComponent(id)}`, { method: 'DELETE', headers: authHeaders() });
      start(null, '');
      hint(reply.ok ? `deleted ${id}` : `not deleted: ${reply.status}`);
    }
  });
}
