// The event console in a real headless Chromium against the real binary (issue 16's browser
// tests): events posted with `send` appear in the table without a reload; an event's page shows
// its deliveries; replaying a dead delivery changes its chip; a download's progress bars reach
// 100 %; the dead-letter view and its bulk replay work; the quarantine view shows errors at their
// pointers; a hostile body stays text; axe-core finds no serious or critical violation on the
// table, an event's page, the dead letters and the quarantine. Saves docs/console-events.png and
// docs/console-event.png.
//   usage: node console_test.mjs <path to fhir-bulk-receiver>
import fs from 'node:fs';
import path from 'node:path';
import {
  checkAccessibility, cleanup, closedTarget, fixtures, repo, send, startBrowser,
  startExportServer, startServer, tempDir, until,
} from './harness.mjs';

const binary = process.argv[2];
const ADMIN_TOKEN = 'console-test-admin-token-5f1c';
const WEBHOOK_TOKEN = 'console-test-webhook-token-9a2e';
const WAIT = 20000;
const started = Date.now();
// Where the screenshots go: docs/ (linked from the README), or FBR_SCREENSHOTS_DIR.
const shots = process.env.FBR_SCREENSHOTS_DIR ?? path.join(repo, 'docs');
const step = (text) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${text}`);

let server = null;  // for the log's tail on a failure

function event(fixture, logId, edit) {
  const body = JSON.parse(fs.readFileSync(path.join(fixtures, 'events', fixture), 'utf8'));
  body.Meta.Logs = [{ ID: logId, AttemptID: `${logId}-attempt-1` }];
  edit?.(body);
  return body;
}

async function main() {
  if (!binary || !fs.existsSync(binary)) throw new Error(`usage: console_test.mjs <binary>`);
  const dir = tempDir();
  fs.mkdirSync(shots, { recursive: true });
  const exports = await startExportServer();
  const target = await closedTarget();
  server = await startServer(binary, dir, {
    listen: '127.0.0.1:0',
    path: '/webhook',
    verification_tokens: [WEBHOOK_TOKEN],
    data_dir: path.join(dir, 'data'),
    invalid_payloads: 'quarantine',
    admin: { listen: '127.0.0.1:0', tokens: [ADMIN_TOKEN] },
    handlers: [
      { name: 'files', type: 'file', dir: path.join(dir, 'events') },
      { name: 'notify', type: 'http', url: `http://127.0.0.1:${target.port}/hook`,
        timeout_ms: 2000, retry: { max_attempts: 1 } },
      { name: 'download', type: 'download', when: { status: [200] },
        dir: path.join(dir, 'exports'), allowed_hosts: ['127.0.0.1'],
        allow_private_addresses: true, max_retry_wait_ms: 2000 },
    ],
  });
  step(`server up: admin ${server.admin}, webhook ${server.webhook}`);

  const browser = await startBrowser(dir);
  const page = await browser.newPage();
  // One size all along (a resize just before a screenshot can catch a half-painted frame).
  await page.setViewport({ width: 1280, height: 1400 });
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    // The wrong-token login below answers 401 on purpose; anything else (a CSP refusal, a failed
    // asset, a script error) is a failure.
    if (message.type() === 'error' && !/status of 401/.test(message.text())) {
      problems.push(`console: ${message.text()}`);
    }
  });
  const visible = (selector) => page.waitForSelector(selector, { visible: true, timeout: WAIT });
  const waitFor = (what, fn, ...args) =>
    page.waitForFunction(fn, { timeout: WAIT, polling: 100 }, ...args)
      .catch((error) => { throw new Error(`${what}: ${error.message}`); });

  // Logging in: the token once (a wrong one first: refused, said so), then the cookie.
  await page.goto(`${server.admin}/`);
  await visible('#login');
  await page.type('#token', 'not-the-token');
  await page.click('#login button[type=submit]');
  await waitFor('the wrong token refused', () =>
    document.getElementById('login-error').textContent.includes('not one of'));
  await page.type('#token', ADMIN_TOKEN);
  await page.click('#login button[type=submit]');
  await visible('table#events');
  await waitFor('the stream open', () => document.getElementById('live').dataset.state === 'live');
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) +
                                           JSON.stringify({ ...sessionStorage }) + document.cookie);
  if (stored.includes(ADMIN_TOKEN)) throw new Error('the page kept the admin token');
  step('logged in, stream live');

  // Three events while the page is open: they must appear without a reload.
  const downloadId = 'console-download-1';
  const hostileId = 'console-hostile-2';
  const testId = 'console-test-3';
  await send(binary, server.webhook, WEBHOOK_TOKEN, event('complete.json', downloadId, (b) => {
    b.requiresAccessToken = false;
    b.Meta.Test = false;
    b.output = exports.files.map((f) => ({ type: f.split('.')[0], url: exports.url(f) }));
  }), dir);
  await send(binary, server.webhook, WEBHOOK_TOKEN, event('in-progress.json', hostileId, (b) => {
    b.Meta.Test = false;
    b.Meta.Source.Name = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>';
  }), dir);
  await send(binary, server.webhook, WEBHOOK_TOKEN, event('in-progress.json', testId), dir);
  await waitFor('three rows, live', (ids) => {
    const links = Array.from(document.querySelectorAll('#events tbody td.logid a'));
    return ids.every((id) => links.some((a) => a.textContent === id));
  }, [downloadId, hostileId, testId]);
  await waitFor('the http deliveries dead, the files done', () => {
    const chips = Array.from(document.querySelectorAll('#events .chip'));
    const of = (h) => chips.filter((c) => c.dataset.handler === h);
    return of('notify').length === 3 && of('notify').every((c) => c.dataset.state === 'dead') &&
           of('files').every((c) => c.dataset.state === 'done');
  });
  step('three events in the table without a reload; notify dead, files done');

  // Filters and search, by keyboard: status 202 leaves the two in-progress events, a Log ID in
  // the search box (Enter) leaves one, Clear brings all three back.
  const rowIds = () => page.$$eval('#events tbody td.logid a', (as) => as.map((a) => a.textContent));
  const rowsAre = (what, ids) => waitFor(what, (want) => {
    const got = Array.from(document.querySelectorAll('#events tbody td.logid a'))
      .map((a) => a.textContent).sort();
    return JSON.stringify(got) === JSON.stringify([...want].sort());
  }, ids);
  await page.select('#f-status', '202');
  await rowsAre('status 202: two rows', [hostileId, testId]);
  await page.select('#f-status', '');
  await page.focus('#f-q');
  await page.keyboard.type(downloadId);
  await page.keyboard.press('Enter');
  await rowsAre('search by Log ID: one row', [downloadId]);
  await page.click('.filters button[type=reset]');
  await rowsAre('cleared: three rows', [downloadId, hostileId, testId]);
  // Two a page: "load more" fetches the third (next_cursor), then hides.
  await page.click('#f-limit', { clickCount: 3 });
  await page.keyboard.type('2');
  await page.keyboard.press('Enter');
  await rowsAre('two a page: the newest two', [hostileId, testId]);
  await visible('#events-more');
  await page.click('#events-more');
  await rowsAre('load more: all three', [downloadId, hostileId, testId]);
  await waitFor('no more to load', () => document.getElementById('events-more').hidden);
  await page.click('.filters button[type=reset]');
  await rowsAre('cleared again', [downloadId, hostileId, testId]);
  step(`filters: status, search by Log ID, clear, load more (${(await rowIds()).length} rows)`);

  // An event's page: its deliveries, the download's progress bars reaching 100 %.
  await page.click(`#events a[href="#/events/${downloadId}"]`);
  await visible('article.delivery');
  await waitFor('three deliveries on the page', () =>
    document.querySelectorAll('article.delivery').length === 3);
  await waitFor(`${exports.files.length} files at 100 %`, (n) => {
    const bars = Array.from(document.querySelectorAll('tr.file-row progress'));
    return bars.length === n && bars.every((b) => b.dataset.percent === '100');
  }, exports.files.length);
  await waitFor('the download done', () =>
    document.getElementById('state-download')?.dataset.state === 'done');
  await waitFor('a warning marked in the body', () => document.querySelector('pre.body mark.note'));
  await page.screenshot({ path: path.join(shots, 'console-event.png') });
  await checkAccessibility(page, "an event's page");
  step('event page: 3 deliveries, every progress bar at 100 %, warning marked; axe clean');

  // The table again, for its screenshot and axe.
  await page.click('nav a[data-view=events]');
  await visible('#events tbody tr');
  await waitFor('the table back', () => document.querySelectorAll('#events tbody tr').length >= 3);
  // The table is short: the picture ends a little below it.
  const bottom = await page.$eval('#events', (t) => t.getBoundingClientRect().bottom);
  await page.screenshot({ path: path.join(shots, 'console-events.png'),
                          clip: { x: 0, y: 0, width: 1280, height: Math.ceil(Math.max(360, bottom + 80)) } });
  await checkAccessibility(page, 'the events table');
  step('table: screenshot, axe clean');

  // The hostile body is text on its page; replaying its dead delivery (now that the target
  // answers) turns the chip from dead to done.
  await page.click(`#events a[href="#/events/${hostileId}"]`);
  await visible('#state-notify');
  await waitFor('the hostile body shown as text', () =>
    document.querySelector('pre.body')?.textContent.includes('<img src=x onerror='));
  const pwned = await page.evaluate(() => window.__pwned ?? document.querySelectorAll('main img').length);
  if (pwned) throw new Error('the hostile body ran or became markup');
  await target.open();
  await page.evaluate(() => {
    window.__seen = [];
    const chip = document.getElementById('state-notify');
    window.__seen.push(chip.dataset.state);
    new MutationObserver(() => window.__seen.push(document.getElementById('state-notify')?.dataset.state))
      .observe(document.querySelector('main'), { subtree: true, attributes: true, childList: true });
  });
  await page.click('button[data-replay="notify"]');
  await waitFor('the replayed chip dead → done', () =>
    document.getElementById('state-notify')?.dataset.state === 'done');
  const seen = await page.evaluate(() => window.__seen.filter(Boolean));
  if (seen[0] !== 'dead') throw new Error(`the chip was ${seen[0]} before the replay`);
  step(`replay: the notify chip went ${[...new Set(seen)].join(' → ')}`);

  // The dead letters: the two still dead, "replay all dead" says 2, the list empties, and the
  // table's chips turn done.
  await page.click('nav a[data-view=dead]');
  await visible('#dead-events');
  await waitFor('two dead events', (ids) => {
    const links = Array.from(document.querySelectorAll('#dead-events tbody td.logid a'))
      .map((a) => a.textContent);
    return links.length === 2 && ids.every((id) => links.includes(id));
  }, [downloadId, testId]);
  await checkAccessibility(page, 'the dead letters');
  await page.click('#replay-dead');
  await waitFor('the bulk replay says 2', () =>
    document.getElementById('bulk-outcome').textContent === 'Replayed 2 dead deliveries.');
  await until('both delivered to the target', () => target.received >= 3, WAIT);
  await page.click('nav a[data-view=events]');
  await waitFor('every notify chip done', () => {
    const chips = Array.from(document.querySelectorAll('#events .chip[data-handler=notify]'));
    return chips.length === 3 && chips.every((c) => c.dataset.state === 'done');
  });
  step('dead letters: 2 listed, bulk replay said 2, all notify chips done; axe clean');

  // The quarantine: an invalid payload kept, its errors at their pointers, its body on click.
  await send(binary, server.webhook, WEBHOOK_TOKEN,
             fs.readFileSync(path.join(fixtures, 'events', 'invalid-several-errors.json'), 'utf8'),
             dir);
  await page.click('nav a[data-view=quarantine]');
  await visible('li.quarantine-item');
  await waitFor('its errors at their pointers', () =>
    document.querySelectorAll('li.quarantine-item .notes .pointer').length >= 2);
  // The list is read again when the stream says a payload was quarantined: a click may land on
  // an item just replaced, so the button is pressed (in the page) until the body is open.
  await waitFor('its body with the errors marked', () => {
    if (document.querySelector('li.quarantine-item pre.body mark.note')) return true;
    document.querySelector('li.quarantine-item button[aria-expanded=false]')?.click();
    return false;
  });
  await checkAccessibility(page, 'the quarantine');
  step('quarantine: errors at their pointers, body marked; axe clean');

  if (problems.length) throw new Error(`the page reported:\n  ${problems.join('\n  ')}`);
  const ended = await server.stop();
  if (!ended || ended.code !== 0) {
    throw new Error(`the server did not stop cleanly (${JSON.stringify(ended)}):\n${server.log()}`);
  }
  for (const secret of [ADMIN_TOKEN, WEBHOOK_TOKEN]) {
    if (server.log().includes(secret)) throw new Error('a token reached the server log');
  }
  step('no page error, no CSP refusal, a clean stop, no token in the log');
}

let failed = false;
try {
  await main();
} catch (error) {
  failed = true;
  console.error(`FAILED: ${error.stack ?? error.message}`);
  if (server) console.error(`the server's log, last lines:\n${server.log().split('\n').slice(-40).join('\n')}`);
}
await cleanup();
console.log(failed ? '0 passed, 1 failed' : '1 passed, 0 failed');
process.exit(failed ? 1 : 0);
