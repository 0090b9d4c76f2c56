// The console: asks /api/session whether a login is needed (the admin token once, exchanged for
// an HttpOnly session cookie; the page never keeps the token), then opens the stream and routes
// by the hash: #/ the events, #/events/<key> one event, #/dead the dead letters, #/quarantine.
import { api, setUnauthorizedHandler } from './api.js';
import { el, replace } from './dom.js';
import { openStream, closeStream } from './stream.js';
import { startStatus } from './status.js';
import { mountEvents } from './events.js';
import { mountEvent } from './event.js';
import { mountDead } from './dead.js';
import { mountQuarantine } from './quarantine.js';

const $ = (id) => document.getElementById(id);
let current = null;
let started = false;

function route() {
  const hash = location.hash || '#/';
  if (!hash.startsWith('#/')) return;  // an in-page anchor
  if (current) current.unmount();
  const view = $('view');
  replace(view);
  let name = 'events';
  if (hash.startsWith('#/events/')) {
    name = 'event';
    current = mountEvent(view, decodeURIComponent(hash.slice('#/events/'.length)));
  } else if (hash === '#/dead') {
    name = 'dead';
    current = mountDead(view);
  } else if (hash === '#/quarantine') {
    name = 'quarantine';
    current = mountQuarantine(view);
  } else {
    view.append(el('h1', { tabindex: '-1' }, 'Events'));
    current = mountEvents(view, { title: 'Events' });
  }
  document.body.dataset.view = name;
  for (const link of document.querySelectorAll('nav a[data-view]')) {
    if (link.dataset.view === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (name !== 'event') view.querySelector('h1')?.focus();
}

function start() {
  $('login').hidden = true;
  $('view').hidden = false;
  if (started) return route();
  started = true;
  openStream((state) => {
    const live = $('live');
    live.textContent = state === 'live' ? 'Live' : 'Reconnecting…';
    live.dataset.state = state;
  });
  startStatus($('status'));
  window.addEventListener('hashchange', route);
  route();
  return undefined;
}

function askLogin() {
  closeStream();
  started = false;
  if (current) current.unmount();
  current = null;
  $('view').hidden = true;
  replace($('view'));
  $('login').hidden = false;
  $('token').focus();
}

async function login(event) {
  event.preventDefault();
  const input = $('token');
  const error = $('login-error');
  error.textContent = '';
  try {
    await api.login(input.value);
    input.value = '';  // never kept: the cookie carries the session from here on
    start();
  } catch (e) {
    input.value = '';
    error.textContent = e.status === 401 ? 'That token is not one of the admin tokens.'
                                         : `Could not log in: ${e.message}`;
    input.focus();
  }
}

async function logout() {
  try {
    await api.logout();
  } finally {
    askLogin();
  }
}

// Links to a mark in the body (a warning's JSON Pointer) scroll to it without changing the hash.
document.addEventListener('click', (event) => {
  const link = event.target.closest?.('a[data-local]');
  if (!link) return;
  event.preventDefault();
  const target = document.getElementById(link.getAttribute('href').slice(1));
  if (target) {
    target.setAttribute('tabindex', '-1');
    target.scrollIntoView({ block: 'center' });
    target.focus();
  }
});

async function boot() {
  $('login').addEventListener('submit', login);
  $('logout').addEventListener('click', logout);
  setUnauthorizedHandler(askLogin);
  let session = { authenticated: true, login_required: false };
  try {
    session = await api.session();
  } catch {
    // the API is down: show what we can; the views say what failed
  }
  $('logout').hidden = !session.login_required;
  if (session.login_required && !session.authenticated) askLogin();
  else start();
}

boot();
