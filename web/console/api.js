// The admin API, same origin only (the page never talks to anything else). The session cookie
// rides along by itself; the browser adds Origin to POSTs, which the server checks. A 401 means
// the login is gone: the app asks for the token again.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let onUnauthorized = () => {};
/** What to do when a request answers 401 (app.js: show the login form). */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

async function request(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  let data = null;
  const text = await response.text();
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    if (response.status === 401 && path !== '/api/login') onUnauthorized();
    const message = data && typeof data.error === 'string' ? data.error : `HTTP ${response.status}`;
    throw new ApiError(response.status, message);
  }
  return data;
}

/** "/api/events" + {state: 'dead', q: ''} → "/api/events?state=dead" (empty values left out). */
export function withQuery(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') query.set(name, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

const enc = encodeURIComponent;

export const api = {
  session: () => request('GET', '/api/session'),
  login: (token) => request('POST', '/api/login', { token }),
  logout: () => request('POST', '/api/logout'),
  status: () => request('GET', '/api/status'),
  events: (params) => request('GET', withQuery('/api/events', params)),
  event: (key) => request('GET', `/api/events/${enc(key)}`),
  replay: (key, handler) =>
    request('POST', withQuery(`/api/events/${enc(key)}/replay`, { handler })),
  replayState: (state) => request('POST', withQuery('/api/deliveries/replay', { state })),
  quarantine: (params) => request('GET', withQuery('/api/quarantine', params)),
  quarantined: (id) => request('GET', `/api/quarantine/${enc(id)}`),
};
