// The Rack-push examples of examples/embedded, each run as its one command
// (`node examples/embedded/<name>.mjs`, free port) and exercised by real
// clients (eventsource, ws, chromium), and each handler run again inside a
// gateway with its callbacks recorded: a callback the gateway did not call,
// or called twice, fails these tests.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, describe, it } from 'node:test';
import { EventSource } from 'eventsource';
import { chromium, type Browser } from 'playwright-core';
import { WebSocket } from 'ws';
import { createGateway, silentLogger, type PushConnection, type PushHandler, type UpgradeDecider } from '@warren/gateway';
import { Producer } from '@warren/producer';
import { AMQP_URL, readSse, requireRabbit, ROOT, spawnNode, until, type NodeProcess, type SseReader } from './support/index.js';

const PROBE = 'probe ';

const CHROMIUM = process.env.WARREN_TEST_CHROMIUM ?? '/usr/bin/chromium';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const example = (name: string): string => join(ROOT, 'examples', 'embedded', `${name}.mjs`);

/** Runs `node examples/embedded/<name>.mjs` on a free port; resolves with the URL it printed. */
async function run(name: string, env: NodeJS.ProcessEnv = {}): Promise<{ proc: NodeProcess; url: string }> {
  const proc = spawnNode([example(name)], { env: { PORT: '0', ...env }, withoutWarrenEnv: true });
  try {
    const m = await proc.waitFor(/ on (http:\/\/127\.0\.0\.1:\d+)/);
    return { proc, url: m[1]! };
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

interface Socket {
  ws: WebSocket;
  messages: (string | Buffer)[];
  closed: Promise<number>;
}

async function socket(url: string): Promise<Socket> {
  const ws = new WebSocket(url);
  const messages: (string | Buffer)[] = [];
  ws.on('message', (data: Buffer, isBinary) => messages.push(isBinary ? data : data.toString('utf8')));
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  await once(ws, 'open');
  return { ws, messages, closed };
}

/** Logs every callback of `handler` and counts writes made after its onClose. */
function record(handler: PushHandler): { handler: PushHandler; log: string[]; writesAfterClose: () => number } {
  const log: string[] = [];
  let closed = false;
  let late = 0;
  const spy = (conn: PushConnection): PushConnection =>
    new Proxy(conn, {
      get(target, prop) {
        if (prop === 'write') {
          return (...args: Parameters<PushConnection['write']>) => {
            if (closed) late++;
            return target.write(...args);
          };
        }
        const value = Reflect.get(target, prop, target) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  const wrapped: PushHandler = {};
  for (const name of ['onOpen', 'onMessage', 'onDrained', 'onShutdown', 'onClose'] as const) {
    wrapped[name] = (conn: PushConnection, ...args: unknown[]) => {
      log.push(args.length === 0 ? name : `${name}:${String(args[0])}`);
      if (name === 'onClose') closed = true;
      return (handler[name] as ((...a: unknown[]) => unknown) | undefined)?.call(handler, spy(conn), ...args) as void;
    };
  }
  return { handler: wrapped, log, writesAfterClose: () => late };
}

/** A bare server with a gateway attached, for running an example's handler recorded. */
async function host(decide: UpgradeDecider, amqpUrl?: string): Promise<{ url: string; ws: string; close(): Promise<void> }> {
  const server = createServer((_req, res) => res.writeHead(404).end());
  const gateway = createGateway({ server, onUpgrade: decide, logger: silentLogger, ...(amqpUrl === undefined ? {} : { amqpUrl }) });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    ws: url.replace('http', 'ws'),
    async close() {
      await gateway.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

let browser: Browser | undefined;
after(async () => {
  await browser?.close().catch(() => undefined);
});

describe('examples/embedded/tick-tock.mjs', { timeout: 60_000 }, () => {
  it('one command: its page, and the time over SSE (eventsource) and WebSocket (ws)', async () => {
    const { proc, url } = await run('tick-tock', { TICK_MS: '100' });
    try {
      const page = await fetch(`${url}/`);
      assert.equal(page.status, 200);
      assert.match(await page.text(), /new EventSource\('\/clock'\)/);
      const other = await fetch(`${url}/other`, { headers: { accept: 'text/event-stream' } });
      assert.equal(other.status, 404, 'declined: the app answers');
      assert.equal(await other.text(), 'not found\n');
      const es = new EventSource(`${url}/clock`);
      const ticks: number[] = [];
      es.onmessage = (e) => ticks.push((JSON.parse(e.data as string) as { tick: number }).tick);
      const ws = await socket(url.replace('http', 'ws') + '/clock');
      await until(() => ticks.length >= 3 && ws.messages.length >= 3, 'three ticks on each');
      es.close();
      ws.ws.close();
      assert.deepEqual(ticks.slice(0, 3), [1, 2, 3]);
      assert.deepEqual(
        ws.messages.slice(0, 3).map((m) => (JSON.parse(String(m)) as { tick: number }).tick),
        [1, 2, 3],
      );
    } finally {
      await proc.stop();
    }
  });

  it('TickTock: onOpen once starts one timer, onClose once stops it', async () => {
    const { TickTock } = (await import(pathToFileURL(example('tick-tock')).href)) as { TickTock: new (ms: number) => PushHandler };
    const recorded: ReturnType<typeof record>[] = [];
    const app = await host(() => {
      const r = record(new TickTock(100));
      recorded.push(r);
      return r.handler;
    });
    try {
      const sse = readSse(app.url, '/clock');
      const arrivals: number[] = [];
      const ws = await socket(`${app.ws}/clock`);
      ws.ws.on('message', () => arrivals.push(Date.now()));
      await until(() => sse.events.length >= 4 && ws.messages.length >= 4, 'four ticks on each');
      sse.close();
      ws.ws.close();
      await until(() => recorded.every((r) => r.log.includes('onClose')), 'both closed');
      // Two timers (onOpen twice) would tick twice per interval.
      const gaps = arrivals.slice(1, 4).map((t, i) => t - arrivals[i]!);
      assert.ok(
        gaps.every((g) => g >= 50),
        `ticks ${gaps.join(', ')} ms apart`,
      );
      assert.deepEqual(
        sse.events.slice(0, 4).map((e) => (JSON.parse(e.data) as { tick: number }).tick),
        [1, 2, 3, 4],
      );
      // A timer that onClose did not stop would keep writing.
      await sleep(350);
      for (const r of recorded) {
        assert.deepEqual(r.log, ['onOpen', 'onClose']);
        assert.equal(r.writesAfterClose(), 0, 'no write after onClose');
      }
    } finally {
      await app.close();
    }
  });
});

describe('examples/embedded/echo.mjs', { timeout: 60_000 }, () => {
  it('one command: each message answered once, binary as binary; SSE is declined', async () => {
    const { proc, url } = await run('echo');
    try {
      const client = await socket(url.replace('http', 'ws') + '/echo');
      client.ws.send('hello');
      client.ws.send('world');
      client.ws.send(Buffer.from([0, 1, 255]), { binary: true });
      await until(() => client.messages.length >= 3, 'three echoes');
      await sleep(300);
      assert.deepEqual(client.messages.slice(0, 2), ['echo: hello', 'echo: world']);
      assert.deepEqual([...(client.messages[2] as Buffer)], [0, 1, 255]);
      assert.equal(client.messages.length, 3, 'nothing answered twice');
      client.ws.close();
      const sse = await fetch(`${url}/echo`, { headers: { accept: 'text/event-stream' } });
      assert.equal(sse.status, 404);
    } finally {
      await proc.stop();
    }
  });

  it('echo: onMessage once per message, onClose once', async () => {
    const { echo } = (await import(pathToFileURL(example('echo')).href)) as { echo: PushHandler };
    const r = record(echo);
    const app = await host(() => r.handler);
    try {
      const client = await socket(`${app.ws}/echo`);
      for (const text of ['a', 'b', 'c']) client.ws.send(text);
      await until(() => client.messages.length === 3, 'three echoes');
      client.ws.close();
      await until(() => r.log.includes('onClose'), 'onClose');
      await sleep(100);
      assert.deepEqual(client.messages, ['echo: a', 'echo: b', 'echo: c']);
      assert.deepEqual(r.log, ['onOpen', 'onMessage:a', 'onMessage:b', 'onMessage:c', 'onClose']);
    } finally {
      await app.close();
    }
  });
});

/**
 * alice and bob in the chat: everyone sees each join, message and leave exactly once.
 * `listening` waits until the SSE listener hears the room: an app's handler subscribes in
 * `onOpen`, after the client already has its `200`, so on a broker with a network between them
 * alice's join could be published before the listener's process has bound its queue.
 */
async function chatScenario(
  aliceUrl: string,
  bobUrl: string,
  listenerBase: string,
  listening?: (listener: SseReader) => Promise<void>,
): Promise<void> {
  const listener = readSse(listenerBase, '/chat/watcher');
  await until(async () => (await listener.status) === 200, 'the SSE listener');
  await listening?.(listener);
  const alice = await socket(`${aliceUrl}/chat/alice`);
  await until(() => alice.messages.includes('alice joined the chat.'), 'alice sees her join');
  const bob = await socket(`${bobUrl}/chat/bob`);
  await until(() => alice.messages.includes('bob joined the chat.') && bob.messages.includes('bob joined the chat.'), 'both see bob join');
  alice.ws.send('hi bob');
  await until(() => bob.messages.includes('alice: hi bob'), 'bob hears alice');
  bob.ws.send('hi alice');
  await until(() => alice.messages.includes('bob: hi alice'), 'alice hears bob');
  bob.ws.close();
  await until(() => alice.messages.includes('bob left the chat.'), 'alice sees bob leave');
  await sleep(300);
  assert.deepEqual(alice.messages, [
    'alice joined the chat.',
    'bob joined the chat.',
    'alice: hi bob',
    'bob: hi alice',
    'bob left the chat.',
  ]);
  assert.deepEqual(bob.messages, ['bob joined the chat.', 'alice: hi bob', 'bob: hi alice']);
  assert.deepEqual(
    listener.events.map((e) => e.data).filter((data) => !data.startsWith(PROBE)),
    ['alice joined the chat.', 'bob joined the chat.', 'alice: hi bob', 'bob: hi alice', 'bob left the chat.'],
    'an SSE connection only listens',
  );
  alice.ws.close();
  listener.close();
}

describe('examples/embedded/chat.mjs', { timeout: 60_000 }, () => {
  it('one command (embedded broker): join, talk and leave, each seen once by everyone', async () => {
    const { proc, url } = await run('chat');
    try {
      const ws = url.replace('http', 'ws');
      await chatScenario(ws, ws, url);
      const nameless = await fetch(`${url}/chat/bad%20name`, { headers: { accept: 'text/event-stream' } });
      assert.equal(nameless.status, 404, 'a nickname that breaks the rules is declined');
    } finally {
      await proc.stop();
    }
  });

  it('Chat: onOpen, onMessage and onClose once each (recorded)', async () => {
    const { Chat } = (await import(pathToFileURL(example('chat')).href)) as { Chat: new (nickname: string) => PushHandler };
    const recorded = new Map<string, ReturnType<typeof record>>();
    const app = await host(({ path }) => {
      const r = record(new Chat(path.slice('/chat/'.length)));
      recorded.set(path, r);
      return r.handler;
    });
    try {
      await chatScenario(app.ws, app.ws, app.url);
      await until(() => [...recorded.values()].every((r) => r.log.includes('onClose')), 'all closed');
      assert.deepEqual(recorded.get('/chat/alice')!.log, ['onOpen', 'onMessage:hi bob', 'onClose']);
      assert.deepEqual(recorded.get('/chat/bob')!.log, ['onOpen', 'onMessage:hi alice', 'onClose']);
      assert.deepEqual(recorded.get('/chat/watcher')!.log, ['onOpen', 'onClose']);
    } finally {
      await app.close();
    }
  });

  it('two processes on one RabbitMQ make one room: a publish from either reaches subscribers on both', async () => {
    await requireRabbit();
    const a = await run('chat', { WARREN_AMQP_URL: AMQP_URL });
    const b = await run('chat', { WARREN_AMQP_URL: AMQP_URL });
    try {
      assert.notEqual(a.url, b.url);
      // alice on A, bob on B, the SSE listener on B; a producer straight to RabbitMQ probes the room
      // until the listener hears the last probe (nobody else is in the room yet).
      const producer = new Producer({ url: AMQP_URL });
      try {
        let n = 0;
        await chatScenario(a.url.replace('http', 'ws'), b.url.replace('http', 'ws'), b.url, (listener) =>
          until(async () => {
            // The last probe heard: none is still on its way (one queue, in order) to reach bob later.
            if (n > 0 && listener.events.some((e) => e.data === `${PROBE}${n - 1}`)) return true;
            await producer.publish(`${PROBE}${n++}`).to('/chat');
            return false;
          }, 'the SSE listener to hear the room'),
        );
      } finally {
        await producer.close();
      }
    } finally {
      await a.proc.stop();
      await b.proc.stop();
    }
  });
});

describe('examples/embedded/live-list.mjs (Express)', { timeout: 90_000 }, () => {
  it('one command: the snapshot, then each added item, over SSE and WebSocket; bad input refused', async () => {
    const { proc, url } = await run('live-list');
    try {
      const before = await fetch(`${url}/items`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ text: 'bread' }),
      });
      assert.equal(before.status, 201);
      const es = new EventSource(`${url}/items`);
      const seen: string[] = [];
      es.addEventListener('snapshot', (e) =>
        seen.push(`snapshot ${(JSON.parse(e.data as string) as { items: { text: string }[] }).items.map((i) => i.text).join(',')}`),
      );
      es.addEventListener('item', (e) => seen.push(`item ${(JSON.parse(e.data as string) as { text: string }).text}`));
      const ws = await socket(url.replace('http', 'ws') + '/items');
      await until(() => seen.length === 1 && ws.messages.length === 1, 'the snapshots');
      const added = await fetch(`${url}/items`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ text: 'milk' }),
      });
      assert.equal(added.status, 201);
      await until(() => seen.length === 2 && ws.messages.length === 2, 'the new item on both');
      assert.deepEqual(seen, ['snapshot bread', 'item milk']);
      assert.deepEqual(
        ws.messages
          .map((m) => JSON.parse(String(m)) as unknown)
          .map((m) => ('items' in (m as object) ? 'snapshot' : (m as { text: string }).text)),
        ['snapshot', 'milk'],
      );
      for (const body of [{ text: '' }, { text: 'x'.repeat(201) }, { nope: 1 }]) {
        const bad = await fetch(`${url}/items`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        assert.equal(bad.status, 400);
      }
      es.close();
      ws.ws.close();
    } finally {
      await proc.stop();
    }
  });

  it('two chromium pages: an item added on one appears on both', async () => {
    const { proc, url } = await run('live-list');
    try {
      browser ??= await chromium.launch({
        executablePath: CHROMIUM,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
        timeout: 30_000,
      });
      const pages = await Promise.all([0, 1].map(async () => (await browser!.newContext()).newPage()));
      for (const page of pages) await page.goto(`${url}/`);
      // "live" once the snapshot arrived, which comes after the page's subscription started.
      for (const page of pages) await page.locator('#status', { hasText: 'live' }).waitFor({ timeout: 10_000 });
      await pages[0]!.fill('input[name=text]', 'eggs');
      await pages[0]!.click('button');
      for (const page of pages) await page.locator('#list li', { hasText: 'eggs' }).waitFor({ timeout: 10_000 });
      for (const page of pages) assert.deepEqual(await page.locator('#list li').allTextContents(), ['eggs']);
      for (const page of pages) await page.context().close();
    } finally {
      await proc.stop();
    }
  });
});
