// The streaming examples, each run as its one command (`node examples/<name>/server.mjs`,
// embedded broker, free ports) and exercised by real clients: chromium pages
// (playwright-core), the `eventsource` package and `ws`.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EventSource } from 'eventsource';
import { chromium, type Browser, type Page } from 'playwright-core';
import { WebSocket } from 'ws';
import { ROOT, spawnNode, unique, until } from './support/index.js';

const CHROMIUM = process.env.WARREN_TEST_CHROMIUM ?? '/usr/bin/chromium';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Example {
  child: ChildProcess;
  output(): string;
  /** The URL printed on the line `<label>: <url>`. */
  url(label: string): string;
  /** SIGTERM, then SIGKILL after 5 s. Resolves with the exit code (null if killed). */
  stop(): Promise<number | null>;
}

/** Starts `examples/<name>/server.mjs` on free ports and waits until it printed `<name>: <url>`. */
async function startExample(name: string, env: NodeJS.ProcessEnv = {}): Promise<Example> {
  // Embedded broker, own gateway: whatever WARREN_* the environment has is not for the examples.
  const proc = spawnNode([join(ROOT, 'examples', name, 'server.mjs')], {
    env: { PORT: '0', GATEWAY_PORT: '0', ...env },
    withoutWarrenEnv: true,
  });
  const { child } = proc;
  const output = (): string => proc.output();
  const example: Example = {
    child,
    output,
    url(label) {
      const m = new RegExp(`^${label}: (http://\\S+)`, 'm').exec(output());
      if (m === null) throw new Error(`no "${label}: <url>" line in:\n${output()}`);
      return m[1]!;
    },
    stop: () => proc.stop(),
  };
  try {
    await until(() => new RegExp(`^${name}: http`, 'm').test(output()) || child.exitCode !== null, `${name} to start`, 15_000);
    example.url('gateway');
    example.url(name);
  } catch (err) {
    await example.stop();
    throw err;
  }
  return example;
}

/** Collects the named events of an EventSource, data parsed as JSON when it is. */
function collect(es: EventSource, types: string[]): Array<{ type: string; data: any }> {
  const seen: Array<{ type: string; data: any }> = [];
  for (const type of types) {
    es.addEventListener(type, (e) => {
      const text = (e as MessageEvent).data as string;
      let data: unknown = text;
      try {
        data = JSON.parse(text);
      } catch {
        // not JSON: keep the text
      }
      seen.push({ type, data });
    });
  }
  return seen;
}

async function opened(es: EventSource): Promise<void> {
  await until(() => es.readyState === EventSource.OPEN, `EventSource on ${es.url} to open`, 5000);
}

let browser: Browser | undefined;
async function theBrowser(): Promise<Browser> {
  browser ??= await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    timeout: 30_000,
  });
  return browser;
}
after(async () => {
  await browser?.close().catch(() => undefined);
});

async function listItems(page: Page): Promise<string[]> {
  return page.locator('#log li').allTextContents();
}

describe('examples/chat', { timeout: 60_000 }, () => {
  let chat: Example;
  let app: string;
  let gateway: string;
  const closers: Array<() => unknown> = [];

  before(async () => {
    chat = await startExample('chat');
    app = new URL(chat.url('chat')).origin;
    gateway = chat.url('gateway');
    assert.equal(chat.url('chat'), `${app}/rooms/lobby`);
  });
  after(async () => {
    for (const close of closers) await close();
    await chat.stop();
  });

  const post = (path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> =>
    fetch(`${app}${path}`, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });

  it('two chromium pages in a room see each other join, talk and leave', async () => {
    const room = unique('r-');
    const open = async (name: string): Promise<Page> => {
      const context = await (await theBrowser()).newContext();
      closers.push(() => context.close().catch(() => undefined));
      const page = await context.newPage();
      await page.goto(`${app}/rooms/${room}?name=${name}`, { timeout: 10_000 });
      return page;
    };
    const expectLog = async (page: Page, lines: string[], what: string): Promise<void> => {
      await until(async () => JSON.stringify(await listItems(page)) === JSON.stringify(lines), what, 10_000, 50).catch(
        async (err: Error) => {
          throw new Error(`${err.message}: the page shows ${JSON.stringify(await listItems(page))}, expected ${JSON.stringify(lines)}`);
        },
      );
    };

    const alice = await open('alice');
    assert.equal(await alice.textContent('#room'), room, 'the room name comes from the path');
    await expectLog(alice, ['alice joined'], 'alice to see her own join');
    const bob = await open('bob');
    await expectLog(bob, ['bob joined'], 'bob to see his join');
    await expectLog(alice, ['alice joined', 'bob joined'], 'alice to see bob join');
    assert.equal(await alice.textContent('#members'), 'alice, bob');
    assert.equal(await bob.textContent('#members'), 'alice, bob');

    await alice.fill('#text', 'hello bob');
    await alice.press('#text', 'Enter');
    await bob.fill('#text', 'hi alice <b>!</b>');
    await bob.click('button');
    const talk = ['alice: hello bob', 'bob: hi alice <b>!</b>'];
    await expectLog(alice, ['alice joined', 'bob joined', ...talk], 'alice to see both messages');
    await expectLog(bob, ['bob joined', ...talk], 'bob to see both messages');
    assert.equal(await alice.inputValue('#text'), '', 'a sent message clears the input');
    assert.equal(await bob.locator('#log b').count(), 0, 'messages are shown as text, not HTML');

    // Closing the tab: pagehide sends the leave with sendBeacon.
    await bob.close();
    await expectLog(alice, ['alice joined', 'bob joined', ...talk, 'bob left'], 'alice to see bob leave');
    assert.equal(await alice.textContent('#members'), 'alice');
    assert.equal(await alice.textContent('#status'), 'connected');
  });

  it('an EventSource and a warren.v1 WebSocket in one room get every join, message and leave, in order; another room gets none', async () => {
    const room = unique('r-');
    const es = new EventSource(`${gateway}/rooms/${room}`);
    closers.push(() => es.close());
    const viaSse = collect(es, ['join', 'leave', 'message']);
    const elsewhere = new EventSource(`${gateway}/rooms/${unique('r-')}`);
    closers.push(() => elsewhere.close());
    const viaOtherRoom = collect(elsewhere, ['join', 'leave', 'message']);

    const ws = new WebSocket(`${gateway.replace('http', 'ws')}/_warren/ws`, 'warren.v1');
    closers.push(() => ws.terminate());
    const frames: any[] = [];
    ws.on('message', (data) => frames.push(JSON.parse(data.toString())));
    await once(ws, 'open'); // nothing awaited since it was made: the event is still ahead
    ws.send(JSON.stringify({ type: 'subscribe', channel: `/rooms/${room}` }));
    await until(() => frames.some((f) => f.type === 'subscribed'), 'the WebSocket to subscribe', 5000);
    await opened(es);
    await opened(elsewhere);

    const send = async (action: string, body: unknown, headers?: Record<string, string>): Promise<void> => {
      const res = await post(`/rooms/${room}/${action}`, body, headers);
      assert.equal(res.status, 204, await res.text());
    };
    await send('join', { name: 'ann' });
    await send('join', { name: 'ben' });
    await send('messages', { name: 'ann', text: 'hi ben' });
    await send('messages', { name: 'ben', text: '  hi ann  ' });
    await send('leave', JSON.stringify({ name: 'ben' }), { 'content-type': 'text/plain;charset=UTF-8' }); // as sendBeacon sends it

    const expected = [
      { type: 'join', name: 'ann', members: ['ann'] },
      { type: 'join', name: 'ben', members: ['ann', 'ben'] },
      { type: 'message', name: 'ann', text: 'hi ben' },
      { type: 'message', name: 'ben', text: 'hi ann' },
      { type: 'leave', name: 'ben', members: ['ann'] },
    ];
    const messages = (): any[] => frames.filter((f) => f.type === 'message');
    await until(() => viaSse.length >= expected.length && messages().length >= expected.length, 'five chat events on both clients', 5000);
    const shape = ({ type, data }: { type: string; data: any }): object => ({ type, ...data, at: undefined });
    assert.deepEqual(
      viaSse.map(shape),
      expected.map((e) => ({ ...e, at: undefined })),
    );
    assert.deepEqual(
      messages().map((f) => shape({ type: f.event, data: JSON.parse(f.data) })),
      expected.map((e) => ({ ...e, at: undefined })),
    );
    for (const f of messages()) {
      assert.equal(f.channel, `/rooms/${room}`);
      assert.equal(f.contentType.split(';')[0], 'application/json');
      assert.ok(!Number.isNaN(Date.parse(JSON.parse(f.data).at)));
    }
    await sleep(300);
    assert.deepEqual(viaOtherRoom, [], 'another room hears nothing');
  });

  it('the app server checks what it publishes and serves rooms only', async () => {
    const room = `/rooms/${unique('r-')}`;
    const status = async (res: Promise<Response>): Promise<number> => {
      const r = await res;
      await r.arrayBuffer();
      return r.status;
    };
    assert.equal(await status(post(`${room}/messages`, { name: 'ann', text: '   ' })), 400);
    assert.equal(await status(post(`${room}/messages`, { name: 'ann', text: 'x'.repeat(501) })), 400);
    assert.equal(await status(post(`${room}/messages`, { text: 'no name' })), 400);
    assert.equal(await status(post(`${room}/join`, { name: 'n'.repeat(33) })), 400);
    assert.equal(await status(post(`${room}/join`, 'not json')), 400);
    assert.equal(await status(post(`${room}/join`, { name: 'x', pad: 'y'.repeat(5000) })), 413);
    assert.equal(await status(post(`${room}/join`, { name: 'eve' }, { 'sec-fetch-site': 'cross-site' })), 403);
    assert.equal(await status(fetch(`${app}${room}/messages`)), 405);
    assert.equal(await status(post(room, { name: 'x' })), 405);
    assert.equal(await status(fetch(`${app}/rooms/a.b`)), 404);
    assert.equal(await status(fetch(`${app}/rooms/a/b`)), 404);
    const home = await fetch(`${app}/`, { redirect: 'manual' });
    assert.equal(home.status, 302);
    assert.equal(home.headers.get('location'), '/rooms/lobby');
    const page = await fetch(`${app}${room}`);
    assert.equal(page.status, 200);
    const html = await page.text();
    assert.ok(html.includes(`'${gateway}'`) && !html.includes('__WARREN_GATEWAY__'), 'the page knows the gateway URL');
  });

  it('stops cleanly on SIGTERM', async () => {
    assert.equal(await chat.stop(), 0, chat.output());
  });
});

describe('examples/ticker', { timeout: 60_000 }, () => {
  let ticker: Example;
  let gateway: string;
  const closers: Array<() => unknown> = [];

  before(async () => {
    ticker = await startExample('ticker', { INTERVAL_MS: '200' });
    gateway = ticker.url('gateway');
  });
  after(async () => {
    for (const close of closers) await close();
    await ticker.stop();
  });

  it('publishes random-walk prices as JSON with the event "price" to /stocks and /stocks/<SYMBOL>', async () => {
    const all = new EventSource(`${gateway}/stocks`);
    const acme = new EventSource(`${gateway}/stocks/ACME`);
    closers.push(
      () => all.close(),
      () => acme.close(),
    );
    const quotes = collect(all, ['price', 'message']);
    const acmeQuotes = collect(acme, ['price', 'message']);
    await opened(all);
    await opened(acme);
    const symbols = ['ACME', 'GLOBEX', 'INITECH', 'UMBRELLA'];
    await until(() => symbols.every((s) => quotes.filter((q) => q.data.symbol === s).length >= 3), 'three rounds of prices', 10_000);
    assert.ok(
      quotes.every((q) => q.type === 'price'),
      'every quote has the event name "price"',
    );
    assert.deepEqual([...new Set(quotes.map((q) => q.data.symbol))].sort(), symbols);
    for (const { data } of quotes) {
      assert.equal(typeof data.price, 'number');
      assert.ok(data.price > 0);
      assert.ok(Math.abs(data.change) <= data.price * 0.011 + 0.01, `a step of at most 1%: ${JSON.stringify(data)}`);
      assert.ok(!Number.isNaN(Date.parse(data.at)));
    }
    // A random walk: each price is the last one plus its change.
    for (const s of symbols) {
      const prices = quotes.filter((q) => q.data.symbol === s).map((q) => q.data);
      for (let i = 1; i < prices.length; i++) {
        assert.ok(
          Math.abs(prices[i - 1].price + prices[i].change - prices[i].price) <= 0.011,
          `${s}: ${JSON.stringify(prices.slice(i - 1, i + 1))}`,
        );
      }
    }
    await until(() => acmeQuotes.length >= 2, '/stocks/ACME prices', 5000);
    assert.ok(
      acmeQuotes.every((q) => q.type === 'price' && q.data.symbol === 'ACME'),
      '/stocks/ACME has ACME only',
    );
  });

  it('its page shows a live table in chromium (warren.v1 WebSocket)', async () => {
    const context = await (await theBrowser()).newContext();
    closers.push(() => context.close().catch(() => undefined));
    const page = await context.newPage();
    const sockets: string[] = [];
    page.on('websocket', (s) => sockets.push(s.url()));
    await page.goto(ticker.url('ticker'), { timeout: 10_000 });
    await page.waitForFunction("document.querySelectorAll('#quotes tr').length === 4", undefined, { timeout: 10_000 });
    assert.equal(await page.textContent('#status'), 'live');
    assert.deepEqual(await page.locator('#quotes tr th').allTextContents(), ['ACME', 'GLOBEX', 'INITECH', 'UMBRELLA']);
    const price = page.locator('#quotes tr[data-symbol="GLOBEX"] td').first();
    const updated = page.locator('#quotes tr[data-symbol="GLOBEX"] td').nth(2);
    const first = [await price.textContent(), await updated.textContent()];
    assert.match(first[0]!, /^\d+\.\d\d$/);
    await until(
      async () => (await updated.textContent()) !== first[1] || (await price.textContent()) !== first[0],
      'the GLOBEX row to update',
      10_000,
      50,
    );
    assert.deepEqual(sockets, [`${gateway.replace('http', 'ws')}/_warren/ws`]);
  });

  it('stops cleanly on SIGTERM, job included', async () => {
    const pid = ticker.child.pid!;
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    assert.equal(children.length, 1, 'the job runs as a child process');
    assert.equal(await ticker.stop(), 0, ticker.output());
    assert.throws(() => process.kill(children[0]!, 0), { code: 'ESRCH' }, 'the job is gone');
    assert.match(ticker.output(), /ticker: publishing ACME, GLOBEX, INITECH, UMBRELLA to \/stocks every 200 ms/);
  });
});

describe('examples/clock, on its own gateway', { timeout: 60_000 }, () => {
  let clock: Example;
  let gateway: string;
  const closers: Array<() => unknown> = [];

  before(async () => {
    clock = await startExample('clock');
    gateway = clock.url('gateway');
  });
  after(async () => {
    for (const close of closers) await close();
    await clock.stop();
  });

  it('pushes the time every second over SSE and raw WebSocket frames, and serves both pages', async () => {
    const pages = [...clock.output().matchAll(/^clock: (\S+)$/gm)].map((m) => m[1]!);
    const origin = new URL(pages[0]!).origin;
    assert.deepEqual(pages, [`${origin}/sse.html`, `${origin}/ws.html`]);
    for (const url of pages) {
      const res = await fetch(url);
      assert.equal(res.status, 200);
      const html = await res.text();
      assert.ok(html.includes(`'${gateway}'`) && html.includes('id="time"'), url);
    }
    assert.equal((await fetch(`${origin}/nope`)).status, 404);

    // The pages' origin may read /clock cross-origin.
    const es = new EventSource(`${gateway}/clock`, {
      fetch: (input, init) => fetch(input, { ...init, headers: { ...init?.headers, origin } }),
    });
    closers.push(() => es.close());
    const viaSse = collect(es, ['message']);
    const ws = new WebSocket(`${gateway.replace('http', 'ws')}/clock`);
    const wsOpen = once(ws, 'open');
    closers.push(() => ws.terminate());
    const viaWs: string[] = [];
    ws.on('message', (data, isBinary) => {
      assert.equal(isBinary, false);
      viaWs.push(data.toString());
    });
    await opened(es);
    await wsOpen;
    await until(() => viaSse.length >= 2 && viaWs.length >= 2, 'two ticks on each', 5000);
    for (const times of [viaSse.map((e) => e.data as string), viaWs]) {
      const [a, b] = times.map((t) => Date.parse(t));
      assert.ok(Math.abs(b! - a! - 1000) < 100, `a second apart: ${times.join(', ')}`);
      assert.ok(Math.abs(Date.now() - b!) < 2000, 'the current time');
    }
    const cors = await fetch(`${gateway}/clock?timeout=0`, { headers: { origin } });
    await cors.arrayBuffer();
    assert.equal(cors.headers.get('access-control-allow-origin'), origin);
  });

  it('stops cleanly on SIGTERM', async () => {
    assert.equal(await clock.stop(), 0, clock.output());
  });
});
