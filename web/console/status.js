// The status bar: ready or why not, backend, version, events per minute over the last hour (a
// small SVG bar chart), deliveries waiting (pending + failed, i.e. waiting for a retry), running
// and dead. Refreshed on a timer and, throttled, whenever the stream says something happened.
import { api } from './api.js';
import { el, svg, replace, throttle } from './dom.js';
import { subscribe } from './stream.js';

const REFRESH_MS = 15000;

export function startStatus(container) {
  const refresh = async () => {
    try {
      render(container, await api.status());
    } catch (error) {
      if (error.status === 401) return;
      replace(container, el('span', { class: 'badge bad' }, 'Status unavailable'), ' ',
              el('span', {}, error.message));
    }
  };
  const soon = throttle(refresh, 2000);
  for (const type of ['event', 'delivery', 'quarantine', 'lost']) subscribe(type, soon);
  refresh();
  setInterval(refresh, REFRESH_MS);
}

function render(container, status) {
  const d = status.deliveries ?? {};
  const waiting = (d.pending ?? 0) + (d.failed ?? 0);
  const reasons = Array.isArray(status.reasons) ? status.reasons : [];
  replace(
    container,
    status.ready
      ? el('span', { class: 'badge good', id: 'ready' }, 'Ready')
      : el('span', { class: 'badge bad', id: 'ready' }, 'Not ready: ',
           reasons.length ? reasons.join('; ') : 'unknown'),
    item('Backend', status.backend),
    item('Version', status.version),
    chart(status.events_per_minute ?? []),
    item('Waiting', waiting, 'deliveries pending or failed (waiting for a retry)', 'count-waiting'),
    item('Running', d.running ?? 0, 'deliveries running', 'count-running'),
    item('Dead', d.dead ?? 0, 'dead deliveries', 'count-dead'),
  );
}

function item(label, value, title, id) {
  return el('span', { class: 'item', title, id }, el('span', { class: 'label' }, `${label} `),
            el('strong', {}, String(value ?? '—')));
}

/** 60 bars, oldest first; its text alternative says the total and the last minute. */
function chart(counts) {
  const values = counts.slice(-60).map((n) => Number(n) || 0);
  const max = Math.max(1, ...values);
  const total = values.reduce((a, b) => a + b, 0);
  const last = values.length ? values[values.length - 1] : 0;
  const width = 120;
  const height = 24;
  const bar = width / 60;
  const label = `Events per minute, last hour: ${total} in all, ${last} this minute`;
  const offset = 60 - values.length;
  return el(
    'span', { class: 'item chart' }, el('span', { class: 'label' }, 'Events/min '),
    svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img',
                 'aria-label': label, id: 'epm' },
        svg('title', {}, label),
        svg('rect', { x: 0, y: height - 1, width, height: 1, class: 'axis' }),
        values.map((n, i) => {
          const h = n === 0 ? 0 : Math.max(1, Math.round((n / max) * (height - 2)));
          return svg('rect', { x: ((offset + i) * bar).toFixed(2), y: height - 1 - h,
                               width: (bar - 0.4).toFixed(2), height: h, class: 'bar' });
        })),
    el('strong', {}, String(last)));
}
