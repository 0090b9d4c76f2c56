// The events table: newest first, live (new events from the stream go on top when they match
// the filters; delivery transitions recolour their chips), filters and search as in the API,
// "load more" by next_cursor. The dead-letter view is the same table with state=dead fixed.
import { api } from './api.js';
import { el, append, time, chip, setChip, announce } from './dom.js';
import { subscribe } from './stream.js';

export const eventHref = (key) => `#/events/${encodeURIComponent(key)}`;

/** A delivery chip for the table: "handler: state". */
function deliveryChip(d) {
  const node = chip(d.state, `${d.handler}: ${d.state}`);
  node.dataset.handler = d.handler;
  node.title = `${d.handler}: ${d.state}, ${d.attempts ?? 0} attempt(s)`;
  return node;
}

function copyButton(text) {
  return el('button', {
    type: 'button', class: 'copy', 'aria-label': `Copy Log ID ${text}`, title: 'Copy',
    onclick: async (e) => {
      try {
        await navigator.clipboard.writeText(text);
        announce('Log ID copied');
      } catch {
        announce('Copying is not allowed here: select the Log ID instead');
      }
      e.stopPropagation();
    },
  }, 'Copy');
}

function row(event) {
  const logId = event.log_id || event.key;
  const chips = el('span', { class: 'chips' }, (event.deliveries ?? []).map(deliveryChip));
  const tr = el('tr', { class: 'event-row' },
    el('td', {}, time(event.received_at)),
    el('td', { class: 'logid' }, el('a', { href: eventHref(event.key) }, logId), ' ',
       event.log_id ? copyButton(event.log_id) : null),
    el('td', {}, String(event.status ?? '')),
    el('td', {}, event.test === true ? el('span', { class: 'tag' }, 'test')
                 : event.test === false ? 'no' : el('span', { class: 'muted' }, '—')),
    el('td', { class: 'num' }, String(event.outputs ?? 0)),
    el('td', {}, chips));
  return { tr, chips, event };
}

const FILTERS = ['state', 'status', 'test', 'handler', 'q', 'since', 'until'];

/** Does a new event from the stream belong on the current page of this filter? */
function matches(event, f) {
  // (limit is not a filter: a live row goes on top of the first page whatever its size)
  if (f.status && String(event.status) !== f.status) return false;
  if (f.test && String(event.test) !== f.test) return false;
  const ds = event.deliveries ?? [];
  if (f.handler && !ds.some((d) => d.handler === f.handler)) return false;
  if (f.state && !ds.some((d) => d.state === f.state)) return false;
  if (f.q && f.q !== event.key && f.q !== event.log_id) return false;
  if (f.until) return false;  // a bounded window: the list does not grow live
  return true;
}

function select(name, label, options) {
  return [el('label', { for: `f-${name}` }, label),
          el('select', { id: `f-${name}`, name },
             options.map(([value, text]) => el('option', { value }, text)))];
}

// datetime-local gives "2026-12-02T20:14" or "...:03": the API takes ISO 8601 UTC with seconds.
function utc(local) {
  return `${local.length === 16 ? `${local}:00` : local}Z`;
}

function filterForm(onApply, fixed) {
  const form = el('form', { class: 'filters', role: 'search', 'aria-label': 'Filter events' },
    fixed.state ? null : select('state', 'Delivery state', [['', 'any'], ['pending', 'pending'],
                        ['running', 'running'], ['done', 'done'], ['failed', 'failed'],
                        ['dead', 'dead']]),
    select('status', 'Status', [['', 'any'], ['200', '200 complete'], ['202', '202 in progress']]),
    select('test', 'Test', [['', 'any'], ['true', 'test only'], ['false', 'not test']]),
    el('label', { for: 'f-handler' }, 'Handler'),
    el('input', { id: 'f-handler', name: 'handler', type: 'text', size: 10, autocomplete: 'off' }),
    el('label', { for: 'f-q' }, 'Search'),
    el('input', { id: 'f-q', name: 'q', type: 'search', size: 24, autocomplete: 'off',
                  placeholder: 'Log ID, attempt or request ID' }),
    el('label', { for: 'f-since' }, 'Since (UTC)'),
    el('input', { id: 'f-since', name: 'since', type: 'datetime-local', step: 1 }),
    el('label', { for: 'f-until' }, 'Until (UTC)'),
    el('input', { id: 'f-until', name: 'until', type: 'datetime-local', step: 1 }),
    el('label', { for: 'f-limit' }, 'Per page'),
    el('input', { id: 'f-limit', name: 'limit', type: 'number', min: 1, max: 500, value: 50,
                  class: 'narrow' }),
    el('button', { type: 'submit' }, 'Apply'),
    el('button', { type: 'reset', class: 'secondary' }, 'Clear'));
  const read = () => {
    const data = new FormData(form);
    const f = { ...fixed };
    const limit = Number(data.get('limit'));
    f.limit = Number.isInteger(limit) && limit >= 1 && limit <= 500 ? limit : 50;
    for (const name of FILTERS) {
      const value = String(data.get(name) ?? '').trim();
      if (value && !fixed[name]) f[name] = name === 'since' || name === 'until' ? utc(value) : value;
    }
    return f;
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); onApply(read()); });
  form.addEventListener('change', (e) => { if (e.target.tagName === 'SELECT') onApply(read()); });
  form.addEventListener('reset', () => setTimeout(() => onApply(read()), 0));
  return form;
}

/**
 * Mounts the table into `container`. options.fixed: filters the view always has ({state:
 * 'dead'}); options.title. Answers {unmount, reload}.
 */
export function mountEvents(container, options = {}) {
  const fixed = options.fixed ?? {};
  let filter = { ...fixed };
  let cursor = null;
  let generation = 0;
  const rows = new Map();  // key → {tr, chips, event}
  const body = el('tbody', {});
  const tableId = options.id ?? 'events';
  const more = el('button', { type: 'button', class: 'secondary', hidden: true, id: `${tableId}-more`,
                              onclick: () => load(false) }, 'Load more');
  const message = el('p', { class: 'muted', role: 'status' });
  const table = el('table', { class: 'events', id: tableId },
    el('caption', { class: 'visually-hidden' }, options.title ?? 'Events'),
    el('thead', {}, el('tr', {}, ['Received', 'Log ID', 'Status', 'Test', 'Outputs',
                                  'Deliveries'].map((h) => el('th', { scope: 'col' }, h)))),
    body);
  append(container, filterForm((f) => { filter = f; load(true); }, fixed),
         el('div', { class: 'table-wrap' }, table), message, more);

  // What the stream said while a fresh page was on its way: applied on top of that page, which
  // may have been read before it.
  let heard = null;
  // Transitions heard before their event: the dispatcher can finish a delivery (a refused POST
  // takes a millisecond) before the stream says the event was committed. Applied when it does, on
  // top of the event's own state from its commit, which is older. A few hundred keys at most.
  const early = new Map();  // key → [delivery, ...]

  async function load(fresh) {
    const mine = ++generation;
    if (fresh) heard = { events: [], deliveries: [] };
    const params = { limit: 50, ...filter };
    if (!fresh && cursor) params.cursor = cursor;
    message.textContent = 'Loading…';
    try {
      const page = await api.events(params);
      if (mine !== generation) return;
      if (fresh) {
        body.replaceChildren();
        rows.clear();
      }
      for (const event of page.events ?? []) add(event, false);
      if (fresh && heard) {
        for (const event of heard.events) add(event, true);
        for (const d of heard.deliveries) update(d);
        heard = null;
      }
      cursor = page.next_cursor ?? null;
      more.hidden = !cursor;
      message.textContent = rows.size ? '' : 'No events.';
    } catch (error) {
      if (mine === generation) message.textContent = `Could not load events: ${error.message}`;
    }
  }

  function add(event, top) {
    if (rows.has(event.key)) return;
    const r = row(event);
    rows.set(event.key, r);
    if (top) body.prepend(r.tr);
    else body.append(r.tr);
  }

  const unsubscribe = [
    subscribe('event', (event) => {
      if (!event || !event.key || !matches(event, filter)) return;
      heard?.events.push(event);
      add(event, true);
      for (const d of early.get(event.key) ?? []) update(d);
      early.delete(event.key);
      message.textContent = '';
      announce(`New event ${event.log_id || event.key}`);
    }),
    subscribe('delivery', (d) => {
      if (!d) return;
      heard?.deliveries.push(d);
      update(d);
    }),
    subscribe('lost', () => load(true)),
  ];

  // A delivery transition: its chip on its row, if the row is on this page.
  function update(d) {
    const r = rows.get(d.key);
    if (!r) {
      if (!early.has(d.key) && early.size >= 500) early.delete(early.keys().next().value);
      early.set(d.key, [...(early.get(d.key) ?? []), d]);
      return;
    }
    const existing = Array.from(r.chips.children).find((c) => c.dataset.handler === d.handler);
    if (existing) {
      setChip(existing, d.state, `${d.handler}: ${d.state}`);
      existing.title = `${d.handler}: ${d.state}, ${d.attempts ?? 0} attempt(s)`;
    } else {
      r.chips.append(deliveryChip(d));
    }
  }
  load(true);
  return {
    reload: () => load(true),
    unmount: () => unsubscribe.forEach((fn) => fn()),
  };
}

