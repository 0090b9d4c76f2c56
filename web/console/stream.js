// One EventSource on /api/stream for the whole page; views subscribe to its message types
// (event, delivery, progress, quarantine, lost) and unsubscribe when they are left.

const listeners = new Map();
let source = null;

/** Opens the stream (once); `onState` hears 'live' or 'reconnecting'. */
export function openStream(onState) {
  if (source) return;
  source = new EventSource('/api/stream');
  source.addEventListener('open', () => onState('live'));
  source.addEventListener('error', () => onState('reconnecting'));
  for (const type of ['event', 'delivery', 'progress', 'quarantine', 'lost']) {
    source.addEventListener(type, (message) => {
      let data = null;
      try {
        data = message.data ? JSON.parse(message.data) : null;
      } catch {
        return;  // not ours to show
      }
      for (const fn of listeners.get(type) ?? []) fn(data);
    });
  }
}

export function closeStream() {
  if (source) source.close();
  source = null;
}

/** subscribe('delivery', fn) → a function that unsubscribes. */
export function subscribe(type, fn) {
  if (!listeners.has(type)) listeners.set(type, new Set());
  listeners.get(type).add(fn);
  return () => listeners.get(type).delete(fn);
}
