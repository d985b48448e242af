// A vehicle's trips of the last 24 hours (GET /api/v1/devices/{id}/trips), as a list for its
// popup: when each started and ended, how far and how fast it went.
import { problem } from '/draw.js';

const clock = (ts) => new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });

// A list element, filled when the answer comes (the most recent trips first, five at most).
export function tripList(device, authHeaders) {
  const list = document.createElement('ol');
  list.className = 'trips';
  const say = (text) => { list.replaceChildren(Object.assign(document.createElement('li'), { textContent: text })); };
  say('trips: loading…');
  fetch(`/api/v1/devices/${encodeURIComponent(device)}/trips`, { headers: authHeaders() })
    .catch((e) => e)
    .then(async (reply) => {
      if (!reply.ok) { say(`trips: ${await problem(reply)}`); return; }
      const trips = (await reply.json()).trips.reverse().slice(0, 5);
      if (!trips.length) { say('no trip in the last 24 hours'); return; }
      list.replaceChildren(...trips.map((t) => {
        const li = document.createElement('li');
        li.className = 'trip';
        li.textContent = `${clock(t.start)}–${clock(t.end)} · ${(t.distance_m / 1000).toFixed(1)} km · max ${(t.max_speed_mps * 3.6).toFixed(0)} km/h`;
        return li;
      }));
    });
  return list;
}
