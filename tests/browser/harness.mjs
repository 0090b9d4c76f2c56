// What the console's browser test stands on: a temp folder, the real binary with a config of
// the test's making, a slow loopback file server for the download handler, an http target that
// is closed until the test opens it, the binary's own `send`, headless Chromium (Debian's) with
// axe-core, and the clean-up of everything it started. Loopback only; every wait has a deadline.
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const fixtures = path.resolve(here, '..', 'fixtures');
export const repo = path.resolve(here, '..', '..');

const cleanups = [];
/** Registers clean-up work, run in reverse order by cleanup(). */
export function onCleanup(fn) {
  cleanups.push(fn);
}
export async function cleanup() {
  while (cleanups.length) {
    try {
      await cleanups.pop()();
    } catch (error) {
      console.error(`cleanup: ${error.message}`);
    }
  }
}

export function tempDir() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fbr-console-'));
  onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Polls fn until it answers truthy, or fails after `ms` naming `what`. */
export async function until(what, fn, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server.address().port));
  });
}

function close(server) {
  return new Promise((resolve) => {
    server.closeAllConnections?.();
    server.close(() => resolve());
  });
}

/**
 * Serves tests/fixtures/synthea-r4/<name> as it is (application/gzip), in 8 KiB pieces 40 ms
 * apart, so a download lasts long enough for the page to show its progress.
 */
export async function startExportServer() {
  const dir = path.join(fixtures, 'synthea-r4');
  const server = http.createServer((req, res) => {
    const name = decodeURIComponent(new URL(req.url, 'http://x').pathname.slice(1));
    if (!/^[A-Za-z]+\.ndjson\.gz$/.test(name)) {
      res.writeHead(404).end();
      return;
    }
    const data = fs.readFileSync(path.join(dir, name));
    res.writeHead(200, { 'Content-Type': 'application/gzip', 'Content-Length': data.length });
    let offset = 0;
    const piece = () => {
      if (res.destroyed) return;
      const end = Math.min(offset + 8192, data.length);
      res.write(data.subarray(offset, end));
      offset = end;
      if (offset < data.length) setTimeout(piece, 40);
      else res.end();
    };
    piece();
  });
  const port = await listen(server);
  onCleanup(() => close(server));
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.ndjson.gz')).sort();
  return { port, files, url: (name) => `http://127.0.0.1:${port}/${name}` };
}

/** A loopback port with nothing on it (until open() puts a 200 server there). */
export async function closedTarget() {
  const probe = http.createServer();
  const port = await listen(probe);
  await close(probe);
  let server = null;
  onCleanup(() => server && close(server));
  return {
    port,
    received: 0,
    async open() {
      server = http.createServer((req, res) => {
        req.resume();
        req.on('end', () => {
          this.received += 1;
          res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok');
        });
      });
      await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', resolve);
      });
    },
  };
}

/**
 * Starts `binary serve` with `config` (written to dir/config.json), log.format json. Resolves
 * with {webhook, admin, log(), stop()} once the `listening` line names both ports.
 */
export async function startServer(binary, dir, config) {
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, JSON.stringify({ ...config, log: { level: 'info', format: 'json' } }));
  const child = spawn(binary, ['serve', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  child.stdout.on('data', (d) => { text += d; });
  child.stderr.on('data', (d) => { text += d; });
  let exited = null;
  child.on('exit', (code, signal) => { exited = { code, signal }; });
  // Answers how it ended: {code, signal} (a clean stop is code 0; ASan's reports make it not).
  const stop = async () => {
    if (!exited) {
      child.kill('SIGTERM');
      await until('the server to stop', () => exited, 20000).catch(() => child.kill('SIGKILL'));
    }
    return exited;
  };
  onCleanup(stop);
  const line = await until('the listening line', () => {
    if (exited) throw new Error(`the server exited (${JSON.stringify(exited)}):\n${text}`);
    return text.split('\n').map(parse).find((l) => l && l.msg === 'listening' && l.admin);
  }, 15000);
  return {
    webhook: `http://${line.address}${config.path}`,
    admin: `http://${line.admin}`,
    log: () => text,
    stop,
  };
}

function parse(line) {
  try {
    return JSON.parse(line);
  } catch {
    return null;
  }
}

/** The binary's own `send` (the token through an environment variable, never argv). */
export function send(binary, url, token, body, dir) {
  const file = path.join(dir, `event-${Date.now()}-${Math.random().toString(16).slice(2)}.json`);
  fs.writeFileSync(file, typeof body === 'string' ? body : JSON.stringify(body, null, 2));
  return new Promise((resolve, reject) => {
    execFile(binary, ['send', '--url', url, '--token-env', 'FBR_TEST_SEND_TOKEN', file],
             { env: { ...process.env, FBR_TEST_SEND_TOKEN: token }, timeout: 15000 },
             (error, stdout, stderr) => {
               if (error) reject(new Error(`send failed: ${error.message}\n${stdout}${stderr}`));
               else resolve(stdout);
             });
  });
}

/** Headless Chromium from Debian, a fresh profile, nothing reaching outside. */
export async function startBrowser(dir) {
  const browser = await puppeteer.launch({
    executablePath: process.env.FBR_CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync',
           `--user-data-dir=${path.join(dir, 'chromium')}`],
  });
  onCleanup(() => browser.close());
  return browser;
}

const axeSource = fs.readFileSync(
  path.join(here, 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');

/**
 * axe-core over the page as it is now: fails on any serious or critical violation. Injected by
 * the DevTools protocol (page.evaluate), which the page's CSP does not govern, so the page is
 * checked under its real policy.
 */
export async function checkAccessibility(page, where) {
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const result = await axe.run(document, { resultTypes: ['violations'] });
    return result.violations.map((v) => ({
      id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')),
    }));
  });
  const bad = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  for (const v of violations) {
    console.log(`  axe (${where}): ${v.impact} ${v.id}: ${v.help} at ${v.nodes.join(', ')}`);
  }
  if (bad.length) throw new Error(`axe: ${bad.length} serious or critical violation(s) on ${where}`);
}
