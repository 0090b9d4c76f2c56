// The quarantine view (#/quarantine): payloads kept under invalid_payloads: quarantine, newest
// first, each with its errors at their JSON Pointers; its body (errors marked) on request.
import { api } from './api.js';
import { el, append, replace, time, bytes } from './dom.js';
import { renderBody, noteList } from './json.js';
import { subscribe } from './stream.js';

function parseErrors(item) {
  if (Array.isArray(item.errors)) return item.errors;
  try {
    const parsed = JSON.parse(item.errors_json ?? '[]');
    return Array.isArray(parsed) ? parsed : [];
  } catch {
    return [];
  }
}

export function mountQuarantine(container) {
  const list = el('ol', { class: 'quarantine', 'aria-label': 'Quarantined payloads' });
  const message = el('p', { class: 'muted', role: 'status' });
  const more = el('button', { type: 'button', class: 'secondary', hidden: true,
                              onclick: () => load(false) }, 'Load more');
  append(container, el('h1', { tabindex: '-1' }, 'Quarantine'),
         el('p', {}, 'Payloads that failed validation, kept under ',
            el('code', {}, 'invalid_payloads: quarantine'), '.'),
         list, message, more);
  let cursor = null;
  const seen = new Set();

  async function load(fresh) {
    message.textContent = 'Loading…';
    try {
      const page = await api.quarantine({ limit: 50, cursor: fresh ? undefined : cursor });
      if (fresh) {
        list.replaceChildren();
        seen.clear();
      }
      for (const item of page.items ?? []) add(item, false);
      cursor = page.next_cursor ?? null;
      more.hidden = !cursor;
      message.textContent = seen.size ? '' : 'Nothing quarantined.';
    } catch (error) {
      message.textContent = `Could not load the quarantine: ${error.message}`;
    }
  }

  function add(item, top) {
    if (!item || seen.has(item.id)) return;
    seen.add(item.id);
    const errors = parseErrors(item);
    const prefix = `q${String(item.id).replace(/[^A-Za-z0-9_-]/g, '_')}`;
    const bodyArea = el('div', { class: 'body-wrap' });
    const show = el('button', { type: 'button', class: 'secondary', 'aria-expanded': 'false',
                                onclick: () => toggle() }, 'Show body');
    const headingId = `${prefix}-h`;
    let notes = noteList(errors, new Map(), prefix, 'Errors');
    const li = el('li', { class: 'quarantine-item' },
      el('article', { 'aria-labelledby': headingId },
        el('h2', { id: headingId }, `Payload ${item.id}`, ' ', time(item.received_at)),
        el('p', { class: 'muted' }, `${bytes(item.bytes)} from ${item.remote_addr || 'unknown'}`,
           item.attempt_id ? ` · attempt ${item.attempt_id}` : '',
           item.request_id ? ` · request ${item.request_id}` : ''),
        notes, show, bodyArea));
    let open = false;
    async function toggle() {
      open = !open;
      show.setAttribute('aria-expanded', String(open));
      show.textContent = open ? 'Hide body' : 'Show body';
      const plain = () => {
        const list = noteList(errors, new Map(), prefix, 'Errors');
        notes.replaceWith(list);
        notes = list;
      };
      if (!open) {
        plain();
        return replace(bodyArea);
      }
      try {
        const full = await api.quarantined(item.id);
        const body = renderBody(full.body ?? '', errors, prefix);
        const linked = noteList(errors, body.marks, prefix, 'Errors');
        notes.replaceWith(linked);
        notes = linked;
        return replace(bodyArea, body.pre);
      } catch (error) {
        return replace(bodyArea, el('p', { class: 'error' }, `Could not load: ${error.message}`));
      }
    }
    if (top) list.prepend(li);
    else list.append(li);
  }

  const unsubscribe = [
    // The stream's item has no id yet (the journal gives it at the commit): the list is read
    // again, so every item shown can open its body.
    subscribe('quarantine', () => load(true)),
    subscribe('lost', () => load(true)),
  ];
  load(true);
  return { unmount: () => unsubscribe.forEach((fn) => fn()) };
}
