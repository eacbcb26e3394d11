import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import amqp from 'amqplib';
import { SignJWT } from 'jose';
import { EventSource } from 'eventsource';
import { WebSocket } from 'ws';
import { WarrenClient, type WarrenClientError, type WarrenMessage } from '@warren/client';
import { Producer, signChannelToken } from '@warren/producer';
import { wildcardQueueName } from '@warren/protocol';
import {
  AMQP_URL,
  BROKERS,
  enableManagement,
  httpPublish,
  jsonError,
  poll,
  rawRequest,
  readSse,
  requireRabbit,
  spawnServe,
  startGateway,
  TOKEN,
  unique,
  until,
  type SseReader,
  type TestGateway,
} from './support/index.js';

const SECRET = 'a-wildcard-secret-of-at-least-32-characters';

/** The `warren.v1` message frames an SSE pattern stream carried, as objects. */
const frames = (reader: SseReader) => reader.events.map((e) => JSON.parse(e.data) as Record<string, any>);

/** Deletes an exchange a test declared (its queues are the gateways', which delete or expire them). */
async function deleteExchange(exchange: string): Promise<void> {
  const conn = await amqp.connect(AMQP_URL);
  try {
    await (await conn.createChannel()).deleteExchange(exchange);
  } finally {
    await conn.close();
  }
}

/** Publishes `bodies[i]` to `channels[i]` and waits until `reader` holds `count` events (then a little more, for strays). */
async function publishAll(gw: TestGateway, channels: string[], tag: string): Promise<void> {
  for (const channel of channels) {
    const res = await httpPublish(gw.url, channel, `${tag}${channel}`);
    assert.equal(res.status, 200, JSON.stringify(res.json));
  }
}

function openSocket(url: string): Promise<{ ws: WebSocket; frames: Array<Record<string, any>> }> {
  const ws = new WebSocket(url, 'warren.v1');
  const got: Array<Record<string, any>> = [];
  ws.on('message', (data) => got.push(JSON.parse(data.toString()) as Record<string, any>));
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws, frames: got }));
    ws.once('error', reject);
  });
}

const MANAGEMENT_URL = process.env.WARREN_TEST_MANAGEMENT_URL ?? 'http://guest:guest@127.0.0.1:15672';

for (const kind of BROKERS) {
  describe(`wildcard subscriptions on the ${kind} broker`, () => {
    let gw: TestGateway;
    const exchange = unique('wildcards-');
    // Each run its own root, so that runs (and the other tests on the shared broker) never meet.
    const root = `/${unique('stocks')}`;
    const other = `/${unique('other')}`;
    before(async () => {
      // On RabbitMQ the publish answer counts queues through the management API (see route-count.test.ts).
      if (kind === 'rabbitmq') await enableManagement();
      gw = await startGateway(kind, {
        exchange,
        wildcardRoutes: `${root}/,${other}/`,
        wildcardLingerMs: 300,
        tokenSecret: SECRET,
        ...(kind === 'rabbitmq' ? { managementUrl: MANAGEMENT_URL, routeCountMaxAgeMs: 100 } : {}),
      });
    });
    after(async () => {
      await gw.close();
      if (kind === 'rabbitmq') await deleteExchange(exchange);
    });

    const token = (channels: string[]): string => signChannelToken({ channels, ttlMs: 60_000 }, SECRET);

    it('a /x/* stream gets what is published to three matching channels, nothing from another root nor a deeper channel', async () => {
      const reader = readSse(gw.url, `${root}/*?token=${token([`${root}/*`])}`);
      assert.equal(await reader.status, 200);
      await publishAll(gw, [`${root}/a`, `${other}/x`, `${root}/b`, `${root}/a/b`, `${root}/c`], 'm');
      await until(() => reader.events.length >= 3, 'three messages');
      await sleep(300);
      assert.deepEqual(
        frames(reader).map((f) => [f.type, f.channel, f.pattern, f.data]),
        [
          ['message', `${root}/a`, `${root}/*`, `m${root}/a`],
          ['message', `${root}/b`, `${root}/*`, `m${root}/b`],
          ['message', `${root}/c`, `${root}/*`, `m${root}/c`],
        ],
      );
      // The SSE id is the message's, as on a channel's stream.
      assert.equal(reader.events[0]!.id, frames(reader)[0]!.id);
      reader.close();
    });

    it('a /x/** stream gets every depth under its base; a WebSocket subscribes to patterns by frame', async () => {
      const deep = readSse(gw.url, `${root}/**?token=${token([`${root}/*`])}`);
      assert.equal(await deep.status, 200);
      const { ws, frames: got } = await openSocket(`${gw.url.replace('http', 'ws')}/_warren/ws?token=${token([`${root}/*`])}`);
      ws.send(JSON.stringify({ type: 'subscribe', channel: `${root}/*` }));
      await until(() => got.some((f) => f.type === 'subscribed'), 'the subscribe to be answered');
      await publishAll(gw, [`${root}/a/b`, `${other}/a/b`, `${root}/q`], 'd');
      await until(() => deep.events.length >= 2 && got.filter((f) => f.type === 'message').length >= 1, 'the deliveries');
      await sleep(300);
      assert.deepEqual(
        frames(deep).map((f) => f.channel),
        [`${root}/a/b`, `${root}/q`],
      );
      assert.deepEqual(
        got.filter((f) => f.type === 'message').map((f) => [f.channel, f.pattern, f.data]),
        [[`${root}/q`, `${root}/*`, `d${root}/q`]],
      );
      deep.close();
      ws.close();
    });

    it('refuses malformed patterns with 400 INVALID_PATTERN, and patterns outside the wildcard routes with 403', async () => {
      for (const path of [`${root}/a*`, `${root}/*/x`, `${root}/***`, '/*', `${root}*`]) {
        const res = await rawRequest(gw.url, `${path}?token=${token([`${root}/*`])}`, { headers: { accept: 'text/event-stream' } });
        assert.equal(res.status, 400, path);
        assert.equal(jsonError(res.body).code, 'INVALID_PATTERN', path);
      }
      const outside = `/${unique('elsewhere')}/*`;
      const res = await rawRequest(gw.url, `${outside}?token=${token([`${outside.slice(0, -2)}/*`])}`, {
        headers: { accept: 'text/event-stream' },
      });
      assert.equal(res.status, 403);
      assert.equal(jsonError(res.body).code, 'WILDCARD_NOT_ALLOWED');
      const poll = await rawRequest(gw.url, `${root}/*?token=${token([`${root}/*`])}`);
      assert.equal(poll.status, 400);
      assert.equal(jsonError(poll.body).code, 'WILDCARD_NOT_SUPPORTED');
      const history = await rawRequest(gw.url, `${root}/*?history=5&token=${token([`${root}/*`])}`, {
        headers: { accept: 'text/event-stream' },
      });
      assert.equal(history.status, 400);
      assert.equal(jsonError(history.body).code, 'WILDCARD_NOT_SUPPORTED');
      const { ws, frames: got } = await openSocket(`${gw.url.replace('http', 'ws')}/_warren/ws?token=${token([`${root}/*`])}`);
      ws.send(JSON.stringify({ type: 'subscribe', channel: `${root}/x*` }));
      ws.send(JSON.stringify({ type: 'subscribe', channel: `${outside}` }));
      await until(() => got.filter((f) => f.type === 'error').length === 2, 'two errors');
      assert.deepEqual(
        got.map((f) => [f.code, f.channel]),
        [
          ['INVALID_PATTERN', `${root}/x*`],
          ['WILDCARD_NOT_ALLOWED', outside],
        ],
      );
      ws.close();
    });

    it('a token covers a pattern only through a prefix grant holding every channel it matches', async () => {
      const sse = async (path: string, channels: string[]): Promise<number> => {
        const res = readSse(gw.url, `${path}?token=${token(channels)}`);
        const status = await res.status;
        res.close();
        return status;
      };
      assert.equal(await sse(`${root}/*`, [`${root}/*`]), 200);
      assert.equal(await sse(`${root}/**`, [`${root}/*`]), 200);
      assert.equal(await sse(`${root}/eu/*`, [`${root}/*`]), 200);
      assert.equal(await sse(`${other}/*`, [`${root}/*`]), 403);
      assert.equal(await sse(`${root}/*`, [`${root}/eu/*`]), 403);
      assert.equal(await sse(`${root}/*`, [`${root}/a`, `${root}/b`]), 403);
      assert.equal(await sse(`${root}/*`, [root]), 403);
      const jwt = await new SignJWT({ channels: [`${root}/*`] })
        .setProtectedHeader({ alg: 'HS256' })
        .setExpirationTime('1m')
        .sign(Buffer.from(SECRET));
      const ok = readSse(gw.url, `${root}/*`, { authorization: `Bearer ${jwt}` });
      assert.equal(await ok.status, 200);
      ok.close();
      const refused = readSse(gw.url, `${other}/*`, { authorization: `Bearer ${jwt}` });
      assert.equal(await refused.status, 403);
      refused.close();
    });

    it('the wildcard queue lives while patterns are subscribed, then goes (publishes are no longer routed to it)', async () => {
      const lone = `/${unique('lone')}`;
      const reader = readSse(gw.url, `${root}/*?token=${token([`${root}/*`])}`);
      assert.equal(await reader.status, 200);
      const routed = (await httpPublish(gw.url, lone, 'x')).json;
      assert.equal(routed.routed, true, 'routed to the wildcard queue');
      assert.equal(routed.queues, 1, 'counted: the wildcard queue is the one queue that took it');
      // A channel with a consumer queue of its own as well: both counted (the count may lag by its max age).
      const polled = `/${unique('polled')}`;
      const polledToken = signChannelToken({ consumerId: unique('wc-'), channels: [polled], ttlMs: 60_000 }, SECRET);
      assert.equal((await poll(gw.url, polled, { timeout: 0, query: `&token=${polledToken}` })).status, 204);
      await until(
        async () => (await httpPublish(gw.url, polled, 'p')).json.queues === 2,
        'a count of 2: the consumer queue and the wildcard queue',
        5000,
        100,
      );
      reader.close();
      await until(() => gw.gateway.stats().wildcard?.subscribers === 0, 'the subscriber to leave');
      await until(async () => (await httpPublish(gw.url, lone, 'y')).json.routed === false, 'the queue to go after the linger', 5000, 100);
      assert.equal((await httpPublish(gw.url, lone, 'z')).json.queues, 0, 'and no longer counted');
      const stats = gw.gateway.stats().wildcard!;
      assert.ok(stats.subscribed >= 1 && stats.delivered >= 1, JSON.stringify(stats));
    });
  });
}

describe('wildcard subscriptions on RabbitMQ across processes and exchanges', () => {
  before(() => requireRabbit());

  it('two gateway processes on one RabbitMQ each deliver to their own pattern subscribers', async () => {
    const exchange = unique('wildcards-two-');
    const root = `/${unique('two')}`;
    const args = ['--amqp-url', AMQP_URL, '--exchange', exchange, '--wildcard-routes', `${root}/`, '--publish-token', TOKEN];
    const a = await spawnServe(args);
    const b = await spawnServe(args);
    try {
      const ra = readSse(a.url, `${root}/*`);
      const rb = readSse(b.url, `${root}/**`);
      assert.equal(await ra.status, 200);
      assert.equal(await rb.status, 200);
      await httpPublish(a.url, `${root}/x`, 'one');
      await httpPublish(b.url, `${root}/y/z`, 'two');
      await until(() => ra.events.length >= 1 && rb.events.length >= 2, 'both gateways to deliver');
      await sleep(300);
      assert.deepEqual(
        frames(ra).map((f) => f.channel),
        [`${root}/x`],
      );
      assert.deepEqual(
        frames(rb).map((f) => f.channel),
        [`${root}/x`, `${root}/y/z`],
      );
      // Each process has its own subscriber (and its own wildcard queue).
      for (const gw of [a, b]) {
        const stats = await rawRequest(gw.url, '/_warren/stats', { headers: { authorization: `Bearer ${TOKEN}` } });
        assert.equal((JSON.parse(stats.body) as { wildcard: { subscribers: number } }).wildcard.subscribers, 1);
      }
      ra.close();
      rb.close();
    } finally {
      await a.stop();
      await b.stop();
      await deleteExchange(exchange);
    }
  });

  it('refuses to start with wildcard routes on an existing direct exchange, saying how to fix it', async () => {
    const exchange = unique('wildcards-direct-');
    const conn = await amqp.connect(AMQP_URL);
    try {
      await (await conn.createChannel()).assertExchange(exchange, 'direct', { durable: true });
      await assert.rejects(startGateway('rabbitmq', { exchange, wildcardRoutes: '/stocks/' }), (err: Error) => {
        assert.equal(err.name, 'ExchangeTypeError');
        assert.match(err.message, /topic/);
        assert.match(err.message, /docs\/wildcards\.md/);
        return true;
      });
      // Without wildcard routes, the same gateway takes the direct exchange, and a topic one as well.
      const plain = await startGateway('rabbitmq', { exchange });
      await plain.close();
    } finally {
      await (await conn.createChannel()).deleteExchange(exchange);
      await conn.close();
    }
  });

  it('the producer SDK and a gateway without wildcard routes use a topic exchange as it is', async () => {
    const exchange = unique('wildcards-topic-');
    const root = `/${unique('prod')}`;
    const wild = await startGateway('rabbitmq', { exchange, wildcardRoutes: `${root}/` });
    const plain = await startGateway('rabbitmq', { exchange });
    const producer = new Producer({ url: AMQP_URL, exchange });
    try {
      const reader = readSse(wild.url, `${root}/*`);
      const exact = readSse(plain.url, `${root}/a`);
      assert.equal(await reader.status, 200);
      assert.equal(await exact.status, 200);
      const result = await producer.publish('from the SDK').to(`${root}/a`);
      assert.equal(result.routed, true);
      await until(() => reader.events.length >= 1 && exact.events.length >= 1, 'both streams to get it');
      assert.equal(frames(reader)[0]!.data, 'from the SDK');
      assert.equal(exact.events[0]!.data, 'from the SDK');
      reader.close();
      exact.close();
      // The wildcard queue is this gateway's alone.
      assert.equal(wildcardQueueName('x').startsWith('warren:wildcard:'), true);
    } finally {
      await producer.close();
      await plain.close();
      await wild.close();
      await deleteExchange(exchange);
    }
  });
});

describe('the browser client subscribes to patterns', () => {
  let gw: TestGateway;
  const root = `/${unique('client')}`;
  before(async () => {
    gw = await startGateway('memory', { wildcardRoutes: `${root}/` });
  });
  after(() => gw.close());

  for (const transport of ['websocket', 'sse'] as const) {
    it(`over ${transport}: each message names its channel and the pattern it came through`, async () => {
      const client = new WarrenClient({ url: gw.url, transports: [transport], WebSocket, EventSource, fetch, storage: null });
      const got: WarrenMessage[] = [];
      try {
        client.subscribe(`${root}/*`, (message) => got.push(message));
        await until(() => client.transport === transport && gw.gateway.stats().wildcard?.subscribers === 1, 'the pattern stream');
        await publishAll(gw, [`${root}/a`, `${root}/a/b`, `${root}/b`], transport);
        await until(() => got.length >= 2, 'two messages');
        await sleep(200);
        assert.deepEqual(
          got.map((m) => [m.channel, m.pattern, m.data, m.transport]),
          [
            [`${root}/a`, `${root}/*`, `${transport}${root}/a`, transport],
            [`${root}/b`, `${root}/*`, `${transport}${root}/b`, transport],
          ],
        );
      } finally {
        client.close();
      }
    });
  }

  it('refuses a malformed pattern, and says long-poll cannot read one', async () => {
    const client = new WarrenClient({ url: gw.url, transports: ['long-poll'], fetch, storage: null });
    const errors: WarrenClientError[] = [];
    client.on('error', (error) => errors.push(error));
    try {
      assert.throws(
        () => client.subscribe(`${root}/a*`, () => undefined),
        (err: WarrenClientError) => err.code === 'INVALID_PATTERN',
      );
      client.subscribe(`${root}/*`, () => undefined);
      await until(() => errors.length >= 1, 'the error');
      assert.equal(errors[0]!.code, 'WILDCARD_NOT_SUPPORTED');
    } finally {
      client.close();
    }
  });
});

describe('wildcard patterns count against --max-queues', () => {
  it('a process holds at most --max-queues patterns with subscribers; one freed makes room', async () => {
    const root = `/${unique('cap')}`;
    const gw = await startGateway('memory', { wildcardRoutes: `${root}/`, maxQueues: 1 });
    try {
      const first = readSse(gw.url, `${root}/*`);
      assert.equal(await first.status, 200);
      const again = readSse(gw.url, `${root}/*`);
      assert.equal(await again.status, 200, 'the same pattern costs nothing more');
      const second = readSse(gw.url, `${root}/**`);
      const status = await second.status;
      second.close();
      assert.equal(status, 503);
      first.close();
      again.close();
      await until(() => gw.gateway.stats().wildcard?.patterns === 0, 'the pattern to be forgotten');
      const third = readSse(gw.url, `${root}/**`);
      assert.equal(await third.status, 200);
      third.close();
    } finally {
      await gw.close();
    }
  });
});

describe('the application is asked about a pattern as the channel', () => {
  it('--auth-url gets Warren-Channel: the pattern, and its 403 refuses the stream', async () => {
    const root = `/${unique('auth')}`;
    const asked: string[] = [];
    const app = createServer((req, res) => {
      const channel = String(req.headers['warren-channel']);
      asked.push(channel);
      res.writeHead(channel === `${root}/*` ? 204 : 403).end();
    });
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    const gw = await startGateway('memory', {
      wildcardRoutes: `${root}/`,
      authUrl: `http://127.0.0.1:${(app.address() as AddressInfo).port}/auth`,
    });
    try {
      const allowed = readSse(gw.url, `${root}/*`);
      assert.equal(await allowed.status, 200);
      const refused = readSse(gw.url, `${root}/**`);
      assert.equal(await refused.status, 403);
      assert.deepEqual(asked, [`${root}/*`, `${root}/**`]);
      await httpPublish(gw.url, `${root}/a`, 'hello');
      await until(() => allowed.events.length === 1, 'the message');
      assert.equal(frames(allowed)[0]!.channel, `${root}/a`);
      allowed.close();
      refused.close();
    } finally {
      await gw.close();
      app.close();
    }
  });
});
