// An event's (or a quarantined payload's) body pretty-printed, with the values that the model
// warned about (or the errors of a quarantined payload) marked at their JSON Pointers. Built from
// text nodes only: the body is hostile.
import { el, append } from './dom.js';

/** RFC 6901: "/Meta/Logs/0/ID" → ["Meta", "Logs", "0", "ID"]. */
export function parsePointer(pointer) {
  if (!pointer || pointer === '/') return pointer === '/' ? [''] : [];
  return pointer.split('/').slice(1).map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function pointerOf(parts) {
  return parts.map((part) => `/${part.replace(/~/g, '~0').replace(/\//g, '~1')}`).join('');
}

/** The longest prefix of `parts` that names a value in `doc` (a warning about a missing field
 *  marks its parent). */
function existing(doc, parts) {
  let value = doc;
  const found = [];
  for (const part of parts) {
    if (value === null || typeof value !== 'object' || !Object.hasOwn(value, part)) break;
    value = value[part];
    found.push(part);
  }
  return pointerOf(found);
}

/**
 * renderBody(text, notes): a <pre> with the body, `notes` = [{path, message}] marked. Answers
 * {pre, marks}: marks maps each note's index to its <mark> (for the list's links).
 */
export function renderBody(text, notes = [], idPrefix = 'note') {
  let doc;
  try {
    doc = JSON.parse(text);
  } catch {
    return { pre: el('pre', { class: 'body' }, text), marks: new Map(), parsed: false };
  }
  const byPointer = new Map();
  notes.forEach((note, index) => {
    const at = existing(doc, parsePointer(note.path ?? ''));
    if (!byPointer.has(at)) byPointer.set(at, []);
    byPointer.get(at).push(index);
  });
  const marks = new Map();
  const pre = el('pre', { class: 'body', tabindex: '0' });
  // Writes `value` (at `parts`) into `target`; a noted value goes inside a <mark> of its own.
  const write = (target, value, parts, indent) => {
    const here = byPointer.get(pointerOf(parts));
    if (here) {
      const mark = el('mark', { class: 'note', id: `${idPrefix}-${here[0]}`,
                                title: here.map((i) => notes[i].message).join('; ') });
      for (const i of here) marks.set(i, mark);
      target.append(mark);
      target = mark;
    }
    writeValue(target, value, parts, indent, write);
  };
  write(pre, doc, [], 0);
  return { pre, marks, parsed: true };
}

function writeValue(target, value, parts, indent, write) {
  const pad = '  '.repeat(indent + 1);
  const close = '  '.repeat(indent);
  if (Array.isArray(value)) {
    if (value.length === 0) return append(target, '[]');
    append(target, '[\n');
    value.forEach((item, i) => {
      append(target, pad);
      write(target, item, [...parts, String(i)], indent + 1);
      append(target, i + 1 < value.length ? ',\n' : '\n');
    });
    return append(target, `${close}]`);
  }
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value);
    if (keys.length === 0) return append(target, '{}');
    append(target, '{\n');
    keys.forEach((key, i) => {
      append(target, pad, el('span', { class: 'k' }, JSON.stringify(key)), ': ');
      write(target, value[key], [...parts, key], indent + 1);
      append(target, i + 1 < keys.length ? ',\n' : '\n');
    });
    return append(target, `${close}}`);
  }
  const kind = value === null ? 'null' : typeof value;
  return append(target, el('span', { class: `v-${kind}` }, JSON.stringify(value)));
}

/** The list under the body: each note with its pointer, a link to its mark. */
export function noteList(notes, marks, idPrefix = 'note', label = 'Warnings') {
  if (!notes.length) return el('p', { class: 'muted' }, `No ${label.toLowerCase()}.`);
  return el(
    'ul', { class: 'notes', 'aria-label': label },
    notes.map((note, i) =>
      el('li', {},
         marks.has(i) ? el('a', { href: `#${idPrefix}-${i}`, class: 'pointer', 'data-local': '1' },
                           note.path || '/')
                      : el('code', { class: 'pointer' }, note.path || '/'),
         ' ', note.message ?? '')));
}
