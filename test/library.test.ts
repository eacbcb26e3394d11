// Warren as a library: createGateway({ server, onUpgrade }) inside an
// application's own http.Server, the Rack-push callback object (onOpen,
// onMessage, onDrained, onShutdown, onClose) and the connection (write,
// close, pending, open, request, subscribe, unsubscribe, publish). Real
// sockets (ws, raw HTTP, eventsource), both brokers where a broker is used.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { WebSocket, WebSocketServer } from 'ws';
import {
  createGateway,
  silentLogger,
  type CreateGatewayOptions,
  type Gateway,
  type PushConnection,
  type PushHandler,
  type UpgradeDecider,
} from '@warren/gateway';
import { WarrenError } from '@warren/protocol';
import { AMQP_URL, BROKERS, readSse, requireRabbit, unique, until, type BrokerKindUnderTest } from './support/index.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Embedded {
  server: Server;
  gateway: Gateway;
  url: string;
  ws: string;
  close(): Promise<void>;
}

/** A plain node:http app ("app: …" answers) with a gateway attached. */
async function embed(
  decide: UpgradeDecider,
  opts: Partial<CreateGatewayOptions> & { broker?: BrokerKindUnderTest } = {},
  app: (req: IncomingMessage, res: ServerResponse) => void = (req, res) => {
    res.writeHead(req.url === '/' ? 200 : 404, { 'content-type': 'text/plain' }).end(req.url === '/' ? 'app: home\n' : 'app: not found\n');
  },
): Promise<Embedded> {
  const { broker, ...options } = opts;
  if (broker === 'rabbitmq') await requireRabbit();
  const server = createServer(app);
  const gateway = createGateway({
    server,
    onUpgrade: decide,
    logger: silentLogger,
    ...(broker === 'rabbitmq' ? { amqpUrl: AMQP_URL } : {}),
    ...options,
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    server,
    gateway,
    url,
    ws: url.replace('http', 'ws'),
    async close() {
      await gateway.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface Client {
  ws: WebSocket;
  messages: (string | Buffer)[];
  texts(): string[];
  closed: Promise<{ code: number; reason: string }>;
}

async function connect(url: string, headers: Record<string, string> = {}): Promise<Client> {
  const ws = new WebSocket(url, { headers });
  const messages: (string | Buffer)[] = [];
  ws.on('message', (data: Buffer, isBinary) => messages.push(isBinary ? data : data.toString('utf8')));
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  await once(ws, 'open');
  return { ws, messages, texts: () => messages.filter((m): m is string => typeof m === 'string'), closed };
}

/** The status and body a refused WebSocket upgrade got. */
function refusedUpgrade(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.on('open', () => reject(new Error('the upgrade was accepted')));
    ws.on('error', () => undefined);
  });
}

/**
 * Wraps a handler so that every callback is logged, and every `write` the
 * handler makes after its `onClose` is caught: a callback the gateway does
 * not call, or calls twice, shows in `log`.
 */
function record(handler: PushHandler): { handler: PushHandler; log: string[]; writesAfterClose: number; conns: PushConnection[] } {
  const state = { log: [] as string[], writesAfterClose: 0, conns: [] as PushConnection[], closed: false };
  const spy = (conn: PushConnection): PushConnection =>
    new Proxy(conn, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target) as unknown;
        if (prop === 'write') {
          return (...args: Parameters<PushConnection['write']>) => {
            if (state.closed) state.writesAfterClose++;
            return target.write(...args);
          };
        }
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  const wrapped: PushHandler = {};
  for (const name of ['onOpen', 'onMessage', 'onDrained', 'onShutdown', 'onClose'] as const) {
    wrapped[name] = (conn: PushConnection, ...args: unknown[]) => {
      state.log.push(args.length === 0 ? name : `${name}:${String(args[0])}`);
      if (name === 'onOpen') state.conns.push(conn);
      if (name === 'onClose') state.closed = true;
      const callback = handler[name] as ((...a: unknown[]) => unknown) | undefined;
      return callback?.call(handler, spy(conn), ...args) as void;
    };
  }
  return {
    handler: wrapped,
    log: state.log,
    get writesAfterClose() {
      return state.writesAfterClose;
    },
    conns: state.conns,
  };
}

describe('createGateway({ server }) inside an application', { timeout: 30_000 }, () => {
  const apps: Embedded[] = [];
  after(async () => {
    for (const app of apps) await app.close();
  });

  it('leaves the app its own requests, asks the decider only about push requests, and passes declined ones back', async () => {
    const seen: string[] = [];
    const app = await embed(
      (upgrade) => {
        seen.push(`${upgrade.kind} ${upgrade.path}`);
        return upgrade.path === '/push' ? { onOpen: (conn) => void conn.write('hello') } : undefined;
      },
      {},
      (req, res) =>
        res
          .writeHead(req.url === '/' ? 200 : 404, { 'content-type': 'text/plain' })
          .end(req.url === '/' ? 'app: home\n' : 'app: not found\n'),
    );
    apps.push(app);
    // The app's page and a POST: never shown to the decider.
    const home = await fetch(`${app.url}/`);
    assert.equal(await home.text(), 'app: home\n');
    const post = await fetch(`${app.url}/push`, { method: 'POST', body: 'x' });
    assert.equal(post.status, 404);
    assert.equal(await post.text(), 'app: not found\n');
    const plainGet = await fetch(`${app.url}/push`);
    assert.equal(await plainGet.text(), 'app: not found\n', "a GET without text/event-stream is the app's");
    assert.deepEqual(seen, []);
    // SSE: rack.upgrade? is 'sse'; declined → the app's own response stands.
    const declined = await fetch(`${app.url}/elsewhere`, { headers: { accept: 'text/event-stream' } });
    assert.equal(await declined.text(), 'app: not found\n');
    const sse = readSse(app.url, '/push');
    await until(() => sse.events.length === 1, 'the SSE hello');
    assert.equal(sse.events[0]!.data, 'hello');
    sse.close();
    // WebSocket: rack.upgrade? is 'websocket'; declined with no upgrade listener of the app → 404.
    const refused = await refusedUpgrade(`${app.ws}/elsewhere`);
    assert.equal(refused.status, 404);
    assert.equal(JSON.parse(refused.body).code, 'NOT_FOUND');
    const client = await connect(`${app.ws}/push`);
    await until(() => client.messages.length === 1, 'the WebSocket hello');
    assert.deepEqual(client.messages, ['hello']);
    client.ws.close();
    assert.deepEqual(seen, ['sse /elsewhere', 'sse /push', 'websocket /elsewhere', 'websocket /push']);
  });

  it("hands a declined WebSocket to the app's own upgrade listener", async () => {
    const server = createServer((_req, res) => res.end('app'));
    const own = new WebSocketServer({ noServer: true });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      own.handleUpgrade(req, socket, head, (ws) => ws.send(`the app's own socket on ${req.url}`));
    });
    const gateway = createGateway({
      server,
      logger: silentLogger,
      onUpgrade: ({ path }) => (path === '/push' ? { onOpen: (conn) => void conn.write('pushed') } : undefined),
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const mine = await connect(`${base}/mine`);
      await until(() => mine.messages.length === 1, "the app's socket");
      assert.deepEqual(mine.messages, ["the app's own socket on /mine"]);
      const pushed = await connect(`${base}/push`);
      await until(() => pushed.messages.length === 1, 'the push socket');
      assert.deepEqual(pushed.messages, ['pushed']);
      mine.ws.close();
      pushed.ws.close();
    } finally {
      await gateway.close();
      own.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('calls onOpen, each onMessage and onClose exactly once, in order, one at a time', async () => {
    let running = 0;
    let overlapped = false;
    const handler = {
      async onMessage(conn: PushConnection, data: string | Buffer) {
        running++;
        if (running > 1) overlapped = true;
        await sleep(30);
        conn.write(typeof data === 'string' ? `got ${data}` : data);
        running--;
      },
    };
    const r = record(handler);
    const app = await embed(() => r.handler);
    apps.push(app);
    const client = await connect(`${app.ws}/any?x=1`, { 'x-app': 'kept' });
    client.ws.send('a');
    client.ws.send('b');
    client.ws.send(Buffer.from([1, 2, 3]));
    await until(() => client.messages.length === 3, 'three answers');
    assert.deepEqual(client.messages.slice(0, 2), ['got a', 'got b']);
    assert.deepEqual([...(client.messages[2] as Buffer)], [1, 2, 3], 'binary stays binary');
    assert.equal(overlapped, false, 'onMessage calls never overlap');
    client.ws.close();
    await until(() => r.log.includes('onClose'), 'onClose');
    await sleep(100);
    assert.deepEqual(r.log, ['onOpen', 'onMessage:a', 'onMessage:b', 'onMessage:\u0001\u0002\u0003', 'onClose']);
    const conn = r.conns[0]!;
    assert.equal(conn.open, false);
    assert.equal(conn.pending(), -1);
    assert.equal(conn.write('late'), false, 'write after close is refused');
    assert.equal(conn.kind, 'websocket');
    assert.equal(conn.request.url, '/any?x=1');
    assert.equal(conn.request.headers['x-app'], 'kept');
    assert.equal(conn.path, '/any');
    assert.equal(conn.query.get('x'), '1');
    assert.equal(app.gateway.connections.size, 0);
  });

  it('waits for an async onOpen before the first onMessage', async () => {
    const r = record({
      async onOpen(conn: PushConnection) {
        await sleep(150);
        conn.write('ready');
      },
      onMessage(conn: PushConnection, data: string | Buffer) {
        conn.write(`after ready: ${String(data)}`);
      },
    });
    const app = await embed(() => r.handler);
    apps.push(app);
    const client = await connect(`${app.ws}/x`);
    client.ws.send('early');
    await until(() => client.messages.length === 2, 'two frames');
    assert.deepEqual(client.messages, ['ready', 'after ready: early']);
    client.ws.close();
    await until(() => r.log.at(-1) === 'onClose', 'onClose');
    assert.deepEqual(r.log, ['onOpen', 'onMessage:early', 'onClose']);
  });

  it('reports pending() and calls onDrained once the client has read everything', async () => {
    const chunk = 'x'.repeat(256 * 1024);
    let pendingAfterWrites = 0;
    let pendingInDrained = -2;
    const r = record({
      onOpen(conn: PushConnection) {
        for (let i = 0; i < 32; i++) conn.write(chunk);
        pendingAfterWrites = conn.pending();
      },
      onDrained(conn: PushConnection) {
        pendingInDrained = conn.pending();
      },
    });
    const app = await embed(() => r.handler, { maxPendingBytes: 64 * 1024 * 1024 });
    apps.push(app);
    const client = await connect(`${app.ws}/big`);
    // The client reads nothing for a while: 8 MiB cannot all be handed to the kernel.
    (client.ws as unknown as { _socket: Duplex })._socket.pause();
    await until(() => r.log.includes('onOpen'), 'onOpen');
    await sleep(300);
    assert.ok(pendingAfterWrites > 0, `pending() right after 32 writes was ${pendingAfterWrites}`);
    assert.ok(!r.log.includes('onDrained'), 'not drained while the client does not read');
    assert.ok(r.conns[0]!.pending() > 0, 'still pending while the client does not read');
    (client.ws as unknown as { _socket: Duplex })._socket.resume();
    await until(() => client.messages.length === 32, 'all 32 frames', 20_000);
    await until(() => r.log.includes('onDrained'), 'onDrained');
    assert.equal(pendingInDrained, 0);
    await sleep(100);
    assert.deepEqual(r.log, ['onOpen', 'onDrained'], 'onDrained exactly once');
    client.ws.close();
  });

  it('disconnects a client that leaves more than maxPendingBytes unread, and calls onClose', async () => {
    const chunk = 'y'.repeat(64 * 1024);
    let refused = -1;
    const r = record({
      onOpen(conn: PushConnection) {
        const timer = setInterval(() => {
          for (let i = 0; i < 8; i++) {
            if (!conn.write(chunk)) {
              refused = i;
              clearInterval(timer);
              return;
            }
          }
        }, 10);
      },
    });
    const app = await embed(() => r.handler, { maxPendingBytes: 1024 * 1024 });
    apps.push(app);
    const client = await connect(`${app.ws}/flood`);
    (client.ws as unknown as { _socket: Duplex })._socket.pause();
    await until(() => r.log.includes('onClose'), 'the slow client dropped', 20_000);
    assert.ok(refused >= 0, 'write() returned false once the client was dropped');
    assert.deepEqual(r.log, ['onOpen', 'onClose']);
    assert.equal(app.gateway.connections.size, 0);
    // A paused socket never sees the server's FIN.
    client.ws.terminate();
  });

  it('close(code, reason) reaches a WebSocket client, close() ends an SSE response; onClose once each', async () => {
    const r = record({
      onMessage(conn: PushConnection, data: string | Buffer) {
        if (data === 'bye') conn.close(4000, 'see you');
      },
      onOpen(conn: PushConnection) {
        if (conn.kind === 'sse') {
          conn.write('one', { event: 'greeting', id: '1' });
          conn.close();
        }
      },
    });
    const app = await embed(() => r.handler);
    apps.push(app);
    const client = await connect(`${app.ws}/c`);
    client.ws.send('bye');
    assert.deepEqual(await client.closed, { code: 4000, reason: 'see you' });
    const sse = readSse(app.url, '/c');
    await sse.closed;
    assert.deepEqual(sse.events, [{ id: '1', event: 'greeting', data: 'one' }]);
    await until(() => r.log.filter((l) => l === 'onClose').length === 2, 'both onClose');
    assert.deepEqual(r.log, ['onOpen', 'onMessage:bye', 'onClose', 'onOpen', 'onClose']);
    assert.throws(() => r.conns[0]!.close(1006), RangeError);
  });

  it("refuses with the decider's WarrenError, adds its headers, and closes with 1011 when onOpen throws", async () => {
    const r = record({
      onOpen() {
        throw new Error('boom');
      },
    });
    const app = await embed((upgrade) => {
      if (upgrade.path === '/forbidden') throw new WarrenError('FORBIDDEN', 'not for you');
      upgrade.setHeader('x-room', 'lobby');
      return upgrade.path === '/boom' ? r.handler : { onOpen: (conn) => void conn.write('ok') };
    });
    apps.push(app);
    const sse = await fetch(`${app.url}/forbidden`, { headers: { accept: 'text/event-stream' } });
    assert.equal(sse.status, 403);
    assert.equal(((await sse.json()) as { code: string }).code, 'FORBIDDEN');
    const ws = await refusedUpgrade(`${app.ws}/forbidden`);
    assert.equal(ws.status, 403);
    assert.equal(JSON.parse(ws.body).code, 'FORBIDDEN');
    const stream = readSse(app.url, '/ok');
    assert.equal((await stream.headers)['x-room'], 'lobby');
    stream.close();
    const upgradeHeaders = await new Promise<Record<string, unknown>>((resolve) => {
      const socket = new WebSocket(`${app.ws}/ok`);
      socket.on('upgrade', (res) => resolve(res.headers));
      socket.on('open', () => socket.close());
    });
    assert.equal(upgradeHeaders['x-room'], 'lobby');
    const boom = await connect(`${app.ws}/boom`);
    assert.equal((await boom.closed).code, 1011);
    await until(() => r.log.includes('onClose'), 'onClose');
    assert.deepEqual(r.log, ['onOpen', 'onClose']);
  });

  it('calls onShutdown before onClose on gateway.close(), and its last write goes out', async () => {
    const r = record({
      onShutdown(conn: PushConnection) {
        conn.write('goodbye');
      },
    });
    const app = await embed(() => r.handler);
    const client = await connect(`${app.ws}/s`);
    const sse = readSse(app.url, '/s');
    await until(() => app.gateway.connections.size === 2, 'two connections');
    await app.gateway.close();
    assert.deepEqual(await client.closed, { code: 1001, reason: 'shutdown' });
    assert.deepEqual(client.messages, ['goodbye']);
    await sse.closed;
    assert.deepEqual(
      sse.events.map((e) => e.data),
      ['goodbye'],
    );
    assert.deepEqual(r.log, ['onOpen', 'onOpen', 'onShutdown', 'onShutdown', 'onClose', 'onClose']);
    // The app keeps its server and its own listeners.
    assert.equal(await (await fetch(`${app.url}/`)).text(), 'app: home\n');
    app.server.closeAllConnections();
    await new Promise<void>((resolve) => app.server.close(() => resolve()));
  });

  for (const broker of BROKERS) {
    describe(`pub/sub through the broker (${broker})`, () => {
      it('subscribe, gateway.publish, conn.publish, unsubscribe; bad input is a WarrenError', async () => {
        const news = unique('/lib-news-');
        const errors: string[] = [];
        const app = await embed(
          () => ({
            async onOpen(conn: PushConnection) {
              await conn.subscribe(news);
              await conn.subscribe(news); // twice: a no-op
              for (const bad of ['no-slash', '/a/../b']) {
                await conn.subscribe(bad).catch((err: WarrenError) => errors.push(err.code));
              }
              await conn.subscribe('/x', { consumerId: 'bad id!' }).catch((err: WarrenError) => errors.push(err.code));
              conn.write(JSON.stringify(conn.channels));
            },
            async onMessage(conn: PushConnection, data: string | Buffer) {
              if (data === 'unsubscribe') {
                await conn.unsubscribe(news);
                conn.write('unsubscribed');
              } else {
                await conn.publish(news, `relayed ${String(data)}`);
              }
            },
          }),
          { broker },
        );
        apps.push(app);
        const a = await connect(`${app.ws}/a`);
        const b = await connect(`${app.ws}/b`);
        await until(() => a.messages.length === 1 && b.messages.length === 1, 'both subscribed');
        assert.deepEqual(JSON.parse(a.texts()[0]!), [news]);
        assert.deepEqual(errors.sort(), [
          'INVALID_CHANNEL',
          'INVALID_CHANNEL',
          'INVALID_CHANNEL',
          'INVALID_CHANNEL',
          'INVALID_CONSUMER_ID',
          'INVALID_CONSUMER_ID',
        ]);
        await app.gateway.publish(news, 'from the gateway');
        a.ws.send('hi');
        await until(() => a.messages.length === 3 && b.messages.length === 3, 'both messages on both');
        assert.deepEqual(a.texts().slice(1).sort(), ['from the gateway', 'relayed hi']);
        assert.deepEqual(b.texts().slice(1).sort(), ['from the gateway', 'relayed hi']);
        a.ws.send('unsubscribe');
        await until(() => a.texts().includes('unsubscribed'), 'unsubscribed');
        await app.gateway.publish(news, 'only b');
        await until(() => b.texts().includes('only b'), 'b gets it');
        await sleep(200);
        assert.ok(!a.texts().includes('only b'), 'a unsubscribed');
        await assert.rejects(app.gateway.publish('bad', 'x'), (err: WarrenError) => err.code === 'INVALID_CHANNEL');
        await assert.rejects(app.gateway.publish(news, 'x'.repeat(300_000)), (err: WarrenError) => err.code === 'MESSAGE_TOO_LARGE');
        a.ws.close();
        b.ws.close();
      });

      it('gateway.publish and conn.publish answer who took the message, as the publish endpoint does', async () => {
        const inbox = unique('/lib-routed-');
        const app = await embed(
          (upgrade) => {
            upgrade.consumerId = upgrade.query.get('user') ?? undefined;
            return {
              onOpen: (conn: PushConnection) => conn.subscribe(inbox),
              async onMessage(conn: PushConnection, data: string | Buffer) {
                conn.write(JSON.stringify(await conn.publish(inbox, `relayed ${String(data)}`)));
              },
            };
          },
          { broker },
        );
        apps.push(app);
        // Nobody has ever subscribed: no queue took it.
        const nobody = await app.gateway.publish(inbox, 'into the void', { id: 'void-1' });
        assert.equal(nobody.id, 'void-1');
        assert.deepEqual(nobody.channels, [inbox]);
        assert.equal(nobody.routed, false);
        assert.deepEqual(nobody.unrouted, [inbox]);
        // The embedded broker counts exactly; RabbitMQ counts only with managementUrl (not given here).
        if (broker === 'memory') {
          assert.equal(nobody.queues, 0);
          assert.deepEqual(nobody.routes, { [inbox]: 0 });
        } else {
          assert.equal(nobody.queues, undefined);
        }
        const user = await connect(`${app.ws}/inbox?user=${unique('u')}`);
        await until(() => app.gateway.stats().streams.identified === 1, 'the identified stream');
        const one = await app.gateway.publish(inbox, 'one');
        assert.equal(one.routed, true);
        assert.deepEqual(one.unrouted, []);
        if (broker === 'memory') assert.equal(one.queues, 1);
        // conn.publish answers the same way.
        user.ws.send('hi');
        await until(() => user.texts().some((t) => t.startsWith('{')), 'the answer of conn.publish');
        const answer = JSON.parse(user.texts().find((t) => t.startsWith('{'))!) as { routed: boolean; unrouted: string[]; queues?: number };
        assert.equal(answer.routed, true);
        assert.deepEqual(answer.unrouted, []);
        if (broker === 'memory') assert.equal(answer.queues, 1);
        user.ws.close();
      });

      it('an identified consumer (set by the decider) gets what was published while it was away', async () => {
        const inbox = unique('/lib-inbox-');
        const user = unique('u');
        const app = await embed(
          (upgrade) => {
            upgrade.consumerId = upgrade.query.get('user') ?? undefined;
            return { onOpen: (conn) => conn.subscribe(inbox) };
          },
          { broker },
        );
        apps.push(app);
        const first = await connect(`${app.ws}/inbox?user=${user}`);
        await until(() => app.gateway.stats().streams.identified === 1, 'the identified stream');
        await app.gateway.publish(inbox, 'one');
        await until(() => first.messages.length === 1, 'one');
        first.ws.close();
        await until(() => app.gateway.stats().streams.identified === 0, 'the stream stopped');
        await app.gateway.publish(inbox, 'two');
        await app.gateway.publish(inbox, 'three');
        const again = readSse(app.url, `/inbox?user=${user}`);
        await until(() => again.events.length === 2, 'what was missed');
        assert.deepEqual(
          again.events.map((e) => e.data),
          ['two', 'three'],
        );
        again.close();
        // A decider's consumer id follows the consumer-id rules.
        const bad = await embed(
          (upgrade) => {
            upgrade.consumerId = 'not valid!';
            return {};
          },
          { broker },
        );
        apps.push(bad);
        const refused = await fetch(`${bad.url}/x`, { headers: { accept: 'text/event-stream' } });
        assert.equal(refused.status, 400);
        assert.equal(((await refused.json()) as { code: string }).code, 'INVALID_CONSUMER_ID');
      });
    });
  }
});

describe('warren serve is the same library with the default handler', { timeout: 30_000 }, () => {
  it("a standalone gateway's streams are push connections subscribed to their path", async () => {
    const gateway = createGateway({ port: 0, host: '127.0.0.1', logger: silentLogger });
    const { port } = await gateway.listen();
    const url = `http://127.0.0.1:${port}`;
    try {
      const channel = unique('/lib-default-');
      const sse = readSse(url, channel);
      const ws = await connect(`ws://127.0.0.1:${port}${channel}`);
      await until(() => gateway.connections.size === 2, 'two connections');
      const conns = [...gateway.connections];
      assert.deepEqual(conns.map((c) => c.kind).sort(), ['sse', 'websocket']);
      for (const conn of conns) assert.deepEqual(conn.channels, [channel]);
      // The default handler's connections keep no request (an idle stream holds only what it reads).
      for (const conn of conns) {
        for (const read of [() => conn.request, () => conn.path, () => conn.query]) {
          assert.throws(
            read,
            (err: unknown) => err instanceof WarrenError && err.code === 'REQUEST_NOT_KEPT' && /onUpgrade/.test(err.message),
          );
        }
      }
      await until(() => gateway.stats().fanOut.subscribers === 2, 'both subscribed');
      await gateway.publish(channel, 'to both');
      await until(() => sse.events.length === 1 && ws.messages.length === 1, 'delivered');
      assert.equal(sse.events[0]!.data, 'to both');
      assert.deepEqual(ws.messages, ['to both']);
      sse.close();
      ws.ws.close();
      await until(() => gateway.connections.size === 0, 'closed');
    } finally {
      await gateway.close();
    }
  });

  it("attached with the default handler: channels under pushRoutes (SSE, WebSocket, long-poll), the rest is the app's", async () => {
    const server = createServer((req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end(`app: ${req.method} ${req.url}`));
    const gateway = createGateway({ server, pushRoutes: '/live/', logger: silentLogger });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const channel = unique('/live/lib-');
      assert.equal(await (await fetch(`${url}/`)).text(), 'app: GET /');
      assert.equal(await (await fetch(`${url}/other`, { headers: { accept: 'text/event-stream' } })).text(), 'app: GET /other');
      const sse = readSse(url, channel);
      const ws = await connect(`${url.replace('http', 'ws')}${channel}`);
      await until(() => gateway.stats().fanOut.subscribers === 2, 'both subscribed');
      const poll = fetch(`${url}${channel}?timeout=5`, { headers: { 'consumer-id': unique('c') } });
      // Its queue exists once the poll found it empty.
      await until(() => gateway.stats().broker.getsEmpty === 1, 'the poll waiting');
      await gateway.publish(channel, 'everyone');
      const polled = await poll;
      assert.equal(polled.status, 200);
      assert.equal(await polled.text(), 'everyone');
      await until(() => sse.events.length === 1 && ws.messages.length === 1, 'the streams');
      assert.equal(sse.events[0]!.data, 'everyone');
      assert.deepEqual(ws.messages, ['everyone']);
      sse.close();
      ws.ws.close();
    } finally {
      await gateway.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it("an idle WebSocket of the default handler lets its request go; an onUpgrade handler's keeps it", async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const collected = async (ref: WeakRef<object>): Promise<boolean> => {
      for (let i = 0; i < 10 && ref.deref() !== undefined; i++) {
        await sleep(20);
        gc();
      }
      return ref.deref() === undefined;
    };
    const requestOf = (server: Server): Promise<WeakRef<IncomingMessage>> =>
      new Promise((resolve) => server.prependOnceListener('upgrade', (req: IncomingMessage) => resolve(new WeakRef(req))));
    const gateway = createGateway({ port: 0, host: '127.0.0.1', logger: silentLogger });
    const { port } = await gateway.listen();
    const app = await embed(() => ({}));
    try {
      const defaultReq = requestOf(gateway.server);
      const standalone = await connect(`ws://127.0.0.1:${port}${unique('/lib-gc-')}`);
      await until(() => gateway.stats().fanOut.subscribers === 1, 'subscribed');
      const appReq = requestOf(app.server);
      const embedded = await connect(`${app.ws}/any`);
      await until(() => app.gateway.connections.size === 1, 'open');
      assert.equal(await collected(await defaultReq), true, 'the default handler keeps no request once open');
      assert.equal(await collected(await appReq), false, "an onUpgrade handler's connection keeps conn.request");
      assert.equal([...app.gateway.connections][0]!.request.url, '/any');
      standalone.ws.close();
      embedded.ws.close();
    } finally {
      await app.close();
      await gateway.close();
    }
  });

  it('refuses contradictory embedding options with a sentence', () => {
    const server = createServer();
    assert.throws(() => createGateway({ server, logger: silentLogger }), /pushRoutes/);
    assert.throws(
      () => createGateway({ server, upstream: 'http://127.0.0.1:1', pushRoutes: '/live/', logger: silentLogger }),
      /exclude each other/,
    );
  });
});
