// An event's page (#/events/<key>): its summary, the body with the model's warnings marked at
// their JSON Pointers, every attempt Redox made, each delivery with its attempts as a timeline
// and their errors, a progress bar per downloaded file (live from `progress` messages), and the
// replay buttons (one per handler, and all).
import { api } from './api.js';
import { el, append, replace, time, chip, setChip, bytes, announce, throttle } from './dom.js';
import { renderBody, noteList } from './json.js';
import { subscribe } from './stream.js';

export function mountEvent(container, key) {
  const heading = el('h1', { tabindex: '-1' }, 'Event');
  const actions = el('div', { class: 'actions' });
  const outcome = el('p', { role: 'status', class: 'outcome' });
  const content = el('div', {}, el('p', { class: 'muted' }, 'Loading…'));
  append(container, el('p', {}, el('a', { href: '#/' }, '← Events')), heading, actions, outcome,
         content);
  let files = new Map();     // handler + "\n" + url → {progress, text, cells}
  const known = new Map();   // the same key → the newest progress heard (kept across renders)
  let chips = new Map();     // handler → chip
  let fileLists = new Map(); // handler → tbody of its files

  let generation = 0;  // an older answer arriving after a newer one is dropped
  async function load() {
    const mine = ++generation;
    try {
      const detail = await api.event(key);
      if (mine === generation) render(detail);
    } catch (error) {
      if (mine !== generation) return;
      replace(content, el('p', { class: 'error' },
                          error.status === 404 ? 'No such event.' : `Could not load: ${error.message}`));
    }
  }

  function render(detail) {
    const event = detail.event ?? {};
    heading.textContent = `Event ${event.log_id || event.key || key}`;
    files = new Map();
    chips = new Map();
    fileLists = new Map();
    const deliveries = detail.deliveries ?? [];
    replace(actions,
      deliveries.map((d) => el('button', { type: 'button', 'data-replay': d.handler,
                                           onclick: () => replay(d.handler) },
                               `Replay ${d.handler}`)),
      el('button', { type: 'button', 'data-replay': '*', onclick: () => replay(undefined) },
         'Replay all'));
    const warnings = Array.isArray(detail.warnings) ? detail.warnings : [];
    const body = renderBody(detail.body ?? '', warnings, 'warning');
    replace(content,
      summary(event),
      el('section', { 'aria-labelledby': 'h-deliveries' },
         el('h2', { id: 'h-deliveries' }, 'Deliveries'),
         deliveries.length ? deliveries.map(delivery) : el('p', { class: 'muted' }, 'None.')),
      el('section', { 'aria-labelledby': 'h-attempts' },
         el('h2', { id: 'h-attempts' }, 'Attempts'), attempts(detail.attempts ?? [])),
      el('section', { 'aria-labelledby': 'h-body' },
         el('h2', { id: 'h-body' }, 'Body'),
         el('h3', {}, 'Warnings'), noteList(warnings, body.marks, 'warning', 'Warnings'),
         el('div', { class: 'body-wrap' }, body.pre),
         body.parsed ? el('details', {}, el('summary', {}, 'Raw body, exactly as received'),
                          el('pre', { class: 'body raw', tabindex: '0' }, detail.body ?? ''))
                     : null));
  }

  function summary(event) {
    const pair = (term, value) => el('div', {}, el('dt', {}, term), el('dd', {}, value));
    return el('dl', { class: 'summary' },
      pair('Key', el('code', {}, event.key ?? '')),
      pair('Received', time(event.received_at)),
      pair('Status', String(event.status ?? '')),
      pair('Test', event.test === true ? 'yes' : event.test === false ? 'no' : '—'),
      pair('Outputs', String(event.outputs ?? 0)),
      pair('Sent by Redox', `${event.attempts ?? 1} time(s)`));
  }

  function attempts(list) {
    if (!list.length) return el('p', { class: 'muted' }, 'None recorded.');
    return el('div', { class: 'table-wrap' }, el('table', {},
      el('caption', { class: 'visually-hidden' }, 'Attempts'),
      el('thead', {}, el('tr', {}, ['Received', 'Attempt ID', 'Remote address', 'Request ID',
                                    'Duplicate'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, list.map((a) => el('tr', {},
        el('td', {}, time(a.received_at)), el('td', {}, el('code', {}, a.attempt_id ?? '')),
        el('td', {}, a.remote_addr ?? ''), el('td', {}, el('code', {}, a.request_id ?? '')),
        el('td', {}, a.duplicate ? 'yes' : 'no'))))));
  }

  function delivery(d) {
    const c = chip(d.state);
    c.id = `state-${cssId(d.handler)}`;
    chips.set(d.handler, c);
    const headingId = `d-${cssId(d.handler)}`;
    return el('article', { class: 'delivery', 'aria-labelledby': headingId, 'data-handler': d.handler },
      el('h3', { id: headingId }, d.handler, ' ', el('span', { class: 'muted' }, d.type ?? '')),
      el('p', {}, c, ` ${d.attempts ?? 0} attempt(s)`,
         d.next_attempt_at ? [' · next attempt ', time(d.next_attempt_at)] : null,
         d.updated_at ? [' · updated ', time(d.updated_at)] : null),
      d.last_error ? el('p', { class: 'error' }, el('strong', {}, 'Last error: '), d.last_error) : null,
      timeline(d.history ?? []),
      d.type === 'download' || (d.files ?? []).length || knows(d.handler)
        ? fileTable(d.handler, d.files ?? []) : null);
  }

  function timeline(history) {
    if (!history.length) return el('p', { class: 'muted' }, 'No attempts yet.');
    return el('ol', { class: 'timeline', 'aria-label': 'Attempts of this delivery' },
      history.map((h) => el('li', { class: `outcome-${h.outcome === 'done' ? 'done'
                                                   : h.outcome === 'dead' ? 'dead' : 'retry'}` },
        el('span', { class: 'when' }, `#${h.attempt ?? '?'} `, time(h.started_at)),
        ' ', el('strong', {}, h.outcome ?? ''), ` in ${h.duration_ms ?? 0} ms`,
        h.error ? el('div', { class: 'error' }, h.error) : null)));
  }

  function fileTable(handler, list) {
    const tbody = el('tbody', {});
    fileLists.set(handler, tbody);
    // The stored state, unless the stream already told more (a transfer still running).
    for (const f of list) fileRow(handler, newer(known.get(`${handler}\n${f.url}`), f));
    for (const [id, f] of known) {
      if (id.startsWith(`${handler}\n`) && !list.some((g) => g.url === f.url)) fileRow(handler, f);
    }
    return el('div', { class: 'table-wrap' }, el('table', { class: 'files' },
      el('caption', {}, `Files of ${handler}`),
      el('thead', {}, el('tr', {}, ['File', 'Progress', 'Resources', 'SHA-256', 'Verified']
        .map((h) => el('th', { scope: 'col' }, h)))),
      tbody));
  }

  function knows(handler) {
    return Array.from(known.keys()).some((id) => id.startsWith(`${handler}\n`));
  }

  function newer(a, b) {
    if (!a) return b;
    if (b.verified || (Number(b.bytes) || 0) >= (Number(a.bytes) || 0)) return b;
    return a;
  }

  function fileRow(handler, f) {
    const id = `${handler}\n${f.url}`;
    known.set(id, f);
    let entry = files.get(id);
    if (!entry) {
      const tbody = fileLists.get(handler);
      if (!tbody) {
        reload();  // its delivery's table is not on the page yet
        return;
      }
      const name = f.file || f.url || '';
      const progress = el('progress', { max: 1, value: 0, 'aria-label': `Download of ${name}` });
      const text = el('span', { class: 'progress-text' });
      const cells = { resources: el('td', { class: 'num' }), sha: el('td', { class: 'sha' }),
                      verified: el('td', {}), error: el('div', { class: 'error' }) };
      const tr = el('tr', { class: 'file-row' },
        el('td', {}, el('code', {}, name), cells.error),
        el('td', {}, progress, ' ', text), cells.resources, cells.sha, cells.verified);
      entry = { progress, text, cells };
      files.set(id, entry);
      tbody.append(tr);
    }
    const expected = Number(f.expected) || 0;
    const got = Number(f.bytes) || 0;
    const done = f.verified === true || (expected > 0 && got >= expected);
    entry.progress.max = expected > 0 ? expected : Math.max(got, 1);
    entry.progress.value = done ? entry.progress.max : got;
    const percent = f.verified === true ? 100
      : expected > 0 ? Math.min(100, Math.floor((got * 100) / expected)) : 0;
    entry.progress.dataset.percent = String(percent);
    entry.text.textContent = expected > 0 ? `${percent} % of ${bytes(expected)}` : bytes(got);
    entry.cells.resources.textContent = f.resources === undefined ? '' : String(f.resources);
    entry.cells.sha.textContent = f.sha256 ? `${String(f.sha256).slice(0, 12)}…` : '';
    entry.cells.sha.title = f.sha256 ?? '';
    entry.cells.verified.textContent = f.verified ? 'yes' : 'no';
    entry.cells.error.textContent = f.error ?? '';
  }

  async function replay(handler) {
    outcome.textContent = 'Replaying…';
    try {
      const answer = await api.replay(key, handler);
      const names = Array.isArray(answer?.replayed) ? answer.replayed : [];
      outcome.textContent = `Replayed: ${names.join(', ') || 'nothing'}`;
      announce(outcome.textContent);
      reload();
    } catch (error) {
      outcome.textContent = `Replay failed: ${error.message}`;
    }
  }

  const reload = throttle(load, 500);
  const ours = (m) => m && (m.key === key || m.log_id === key);
  const unsubscribe = [
    subscribe('delivery', (d) => {
      if (!ours(d)) return;
      const c = chips.get(d.handler);
      if (c) setChip(c, d.state);
      reload();  // the timeline and errors too
    }),
    subscribe('progress', (p) => { if (ours(p)) fileRow(p.handler, p); }),
    subscribe('event', (e) => { if (ours(e)) reload(); }),  // opened before it arrived
    subscribe('lost', () => reload()),
  ];
  load().then(() => heading.focus());
  return { unmount: () => unsubscribe.forEach((fn) => fn()) };
}

/** A handler name as an id fragment (names are the operator's, but keep ids tame). */
function cssId(text) {
  return String(text).replace(/[^A-Za-z0-9_-]/g, '_');
}
