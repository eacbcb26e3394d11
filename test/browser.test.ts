// A real browser on the clock example: Debian's chromium, driven by
// playwright-core, opens sse.html and ws.html, sees the time pushed every
// second over both transports, and sees it again after the gateway restarts.
//
// The gateway runs as its own `warren serve` process (so it can be stopped and
// started again on the same port) and the example runs against it with
// WARREN_URL: its pages must reconnect by themselves.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { ROOT, spawnNode, TOKEN, WARREN_BIN, type NodeProcess } from './support/index.js';

const CHROMIUM = process.env.WARREN_TEST_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = join(ROOT, 'test', 'artifacts');
const TIME = /^\d{1,2}:\d{2}:\d{2}/;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Ports nobody listens on now (all held open together, so they differ). */
async function freePorts(n: number): Promise<number[]> {
  const servers = Array.from({ length: n }, () => createServer());
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))));
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

type Proc = NodeProcess;

const start = (args: string[], env: NodeJS.ProcessEnv = {}): Proc => spawnNode(args, { env });

/** `warren serve` on a fixed port, letting the pages' origin read channels. */
async function serve(port: number, pagesOrigin: string): Promise<Proc> {
  // Stopped with SIGINT: closed at once, as a crash-free restart (SIGTERM would drain for seconds).
  const proc = spawnNode(
    [
      WARREN_BIN,
      'serve',
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '--publish-token',
      TOKEN,
      '--cors-origins',
      pagesOrigin,
      '--log-level',
      'warn',
    ],
    { stopSignal: 'SIGINT' },
  );
  await proc.waitFor(/Warren gateway on/);
  return proc;
}

/** Waits until the page's #time changed `count` times; returns the values it showed. */
async function ticks(page: Page, count: number, timeoutMs: number): Promise<string[]> {
  const seen: string[] = [];
  let last = await page.textContent('#time');
  const end = Date.now() + timeoutMs;
  while (seen.length < count) {
    if (Date.now() > end) {
      throw new Error(
        `${page.url()}: #time changed ${seen.length} times in ${timeoutMs} ms (showing ${JSON.stringify(last)}, status ${JSON.stringify(await page.textContent('#status'))})`,
      );
    }
    await sleep(100);
    const now = await page.textContent('#time');
    if (now !== last) {
      assert.match(now ?? '', TIME, `${page.url()} shows a time`);
      seen.push(now!);
      last = now;
    }
  }
  return seen;
}

async function streamsOnGateway(url: string): Promise<{ sse: number; websocket: number }> {
  const res = await fetch(`${url}/_warren/stats`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(res.status, 200);
  const { sse, websocket } = ((await res.json()) as { streams: { sse: number; websocket: number } }).streams;
  return { sse, websocket };
}

describe('the clock example in chromium', { timeout: 120_000 }, () => {
  let browser: Browser | undefined;
  let gateway: Proc | undefined;
  let clock: Proc | undefined;
  const pageLog: string[] = [];

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
  });

  after(async () => {
    await browser?.close().catch(() => undefined);
    await clock?.stop();
    await gateway?.stop();
  });

  it('shows the time over SSE and WebSocket, and again after the gateway restarts', async (t) => {
    const started = Date.now();
    const [gatewayPort, pagesPort] = (await freePorts(2)) as [number, number];
    const gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
    const pagesOrigin = `http://127.0.0.1:${pagesPort}`;
    gateway = await serve(gatewayPort, pagesOrigin);
    clock = start([join(ROOT, 'examples', 'clock', 'server.mjs')], {
      WARREN_URL: gatewayUrl,
      WARREN_PUBLISH_TOKEN: TOKEN,
      PORT: String(pagesPort),
    });
    await clock.waitFor(/clock: \S+\/ws\.html/);
    const urls = [...clock.output().matchAll(/^clock: (\S+)$/gm)].map((m) => m[1]!);
    assert.deepEqual(urls, [`${pagesOrigin}/sse.html`, `${pagesOrigin}/ws.html`]);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
      timeout: 30_000,
    });
    // Every WebSocket a page opens, by page.
    const sockets = new Map<Page, string[]>();
    const open = async (url: string): Promise<Page> => {
      const page = await browser!.newPage({ viewport: { width: 640, height: 360 } });
      sockets.set(page, []);
      page.on('websocket', (s) => sockets.get(page)!.push(s.url()));
      page.on('console', (m) => pageLog.push(`${url} console.${m.type()}: ${m.text()}`));
      page.on('pageerror', (e) => pageLog.push(`${url} error: ${e.message}`));
      await page.goto(url, { timeout: 10_000 });
      return page;
    };
    const sse = await open(urls[0]!);
    const ws = await open(urls[1]!);

    try {
      await Promise.all([ticks(sse, 2, 10_000), ticks(ws, 2, 10_000)]);
      assert.deepEqual(await streamsOnGateway(gatewayUrl), { sse: 1, websocket: 1 });
      t.diagnostic(`first ticks after ${Date.now() - started} ms`);

      // Restart the gateway on the same port.
      assert.equal(await gateway.stop(), 0, gateway.output());
      const down = Date.now();
      await Promise.all(
        [sse, ws].map((page) =>
          page.waitForFunction("document.getElementById('status').textContent !== 'connected'", undefined, { timeout: 5000 }),
        ),
      );
      const shown = [await sse.textContent('#time'), await ws.textContent('#time')];
      await sleep(1500);
      assert.deepEqual([await sse.textContent('#time'), await ws.textContent('#time')], shown, 'no time arrives while the gateway is down');
      gateway = await serve(gatewayPort, pagesOrigin);
      await Promise.all([ticks(sse, 2, 20_000), ticks(ws, 2, 20_000)]);
      t.diagnostic(`both pages ticking again ${Date.now() - down} ms after the gateway stopped`);
      assert.deepEqual(await streamsOnGateway(gatewayUrl), { sse: 1, websocket: 1 }, 'both pages reconnected to the new gateway');
      assert.equal(await sse.textContent('#status'), 'connected');
      assert.equal(await ws.textContent('#status'), 'connected');
      // sse.html gets the time over EventSource alone; ws.html over a WebSocket, opened again after the restart.
      assert.deepEqual(sockets.get(sse), []);
      const wsSockets = sockets.get(ws)!;
      assert.ok(
        wsSockets.length >= 2 && wsSockets.every((u) => u === `ws://127.0.0.1:${gatewayPort}/clock`),
        `ws.html's WebSockets: ${JSON.stringify(wsSockets)}`,
      );
      assert.match(clock.output(), /clock: publishing again/, 'the clock kept going through the restart');

      await sse.screenshot({ path: join(ARTIFACTS, 'clock-sse.png') });
      await ws.screenshot({ path: join(ARTIFACTS, 'clock-ws.png') });
      t.diagnostic(`browser test took ${Date.now() - started} ms`);
    } catch (err) {
      console.error(`page log:\n${pageLog.join('\n')}\nclock output:\n${clock.output()}\ngateway output:\n${gateway?.output()}`);
      throw err;
    }

    assert.equal(await clock.stop(), 0, `the clock exits cleanly on SIGTERM:\n${clock.output()}`);
  });
});
