// Building the page's elements. Everything the server sends (event bodies, Log IDs, errors) is
// hostile: it only ever becomes text (text nodes, textContent, attribute values), never markup:
// nothing in the console parses a string as HTML.

/** el('a', {href: '#/', class: 'x'}, 'text', child, ...): an element; strings become text nodes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, ...children);
  return node;
}

const SVG = 'http://www.w3.org/2000/svg';

/** The same for SVG (the status bar's chart). */
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  setAttrs(node, attrs);
  append(node, ...children);
  return node;
}

function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      node.addEventListener(name.slice(2), value);
    } else if (name === 'class') {
      node.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
    } else {
      node.setAttribute(name, value === true ? '' : String(value));
    }
  }
}

/** Appends strings (as text), numbers, nodes and arrays of them; skips null and false. */
export function append(node, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replaces a node's children. */
export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, ...children);
}

/** "2026-12-02T20:14:03.512Z" → a <time> showing "2026-12-02 20:14:03 UTC". */
export function time(iso) {
  if (!iso) return el('span', { class: 'muted' }, '—');
  const shown = String(iso).replace('T', ' ').replace(/\.\d+Z$/, 'Z').replace(/Z$/, ' UTC');
  return el('time', { datetime: iso }, shown);
}

/** A delivery's state as a chip: its colour and its name (never the colour alone). */
export function chip(state, label) {
  return el('span', { class: ['chip', `state-${safeState(state)}`], 'data-state': state },
            label ?? state);
}

const STATES = new Set(['pending', 'running', 'done', 'failed', 'dead']);
export function safeState(state) {
  return STATES.has(state) ? state : 'unknown';
}

/** Sets a chip's state in place (a delivery transition). */
export function setChip(node, state, label) {
  node.setAttribute('class', `chip state-${safeState(state)}`);
  node.dataset.state = state;
  node.textContent = label ?? state;
}

/** Bytes as "1.2 MiB". */
export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** The polite live region: what changed, for screen readers (and the tests). */
export function announce(text) {
  const region = document.getElementById('announce');
  if (region) region.textContent = text;
}

/** Calls fn at most once every `ms`, with the last arguments (bursts of stream messages). */
export function throttle(fn, ms) {
  let timer = null;
  let pending = null;
  return (...args) => {
    pending = args;
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      fn(...pending);
    }, ms);
  };
}
