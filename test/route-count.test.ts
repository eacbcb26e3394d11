// "Nobody got it" feedback with a count (issue 16 item 2): a publish says
// how many queues and logs took the message (`queues`, and `routes` per
// channel), over the producer SDK (AMQP and HTTP) and the HTTP endpoint
// (single and batch), on RabbitMQ (through the management API, opt-in) and
// on the embedded broker (always). Real gateways, real long-poll and SSE
// consumers, the shared RabbitMQ with its management plugin enabled here.
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import amqp from 'amqplib';
import { OptionError, type Logger } from '@warren/gateway';
import { Producer } from '@warren/producer';
import { consumerQueueName, RouteCounts } from '@warren/protocol';
import { closeAndClean } from './support/channel-logs.js';
import {
  AMQP_URL,
  enableManagement,
  poll,
  rawRequest,
  readSse,
  startGateway,
  TOKEN,
  unique,
  until,
  type SseReader,
  type TestGateway,
} from './support/index.js';

const MANAGEMENT_URL = process.env.WARREN_TEST_MANAGEMENT_URL ?? 'http://guest:guest@127.0.0.1:15672';
/** Short, so that a listing taken before the consumers were made is not used after. */
const MAX_AGE_MS = 100;
const SHARDS = 1;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Answer {
  id: string;
  channels: string[];
  routed: boolean;
  unrouted: string[];
  queues?: number;
  routes?: Record<string, number>;
}

type Via = 'amqp' | 'sdk-http' | 'endpoint' | 'batch';

const cases: Array<{ name: string; broker: 'memory' | 'rabbitmq'; via: Via }> = [
  { name: 'the producer SDK over AMQP, RabbitMQ', broker: 'rabbitmq', via: 'amqp' },
  { name: 'the HTTP endpoint, RabbitMQ', broker: 'rabbitmq', via: 'endpoint' },
  { name: 'the HTTP batch endpoint, RabbitMQ', broker: 'rabbitmq', via: 'batch' },
  { name: 'the producer SDK over HTTP, RabbitMQ', broker: 'rabbitmq', via: 'sdk-http' },
  { name: 'the HTTP endpoint, embedded broker', broker: 'memory', via: 'endpoint' },
  { name: 'the HTTP batch endpoint, embedded broker', broker: 'memory', via: 'batch' },
  { name: 'the producer SDK over HTTP, embedded broker', broker: 'memory', via: 'sdk-http' },
];

/** POSTs one batch of `lines` and returns its results. */
async function publishBatch(gw: TestGateway, lines: Array<{ channels: string[]; data: string }>): Promise<Answer[]> {
  const res = await rawRequest(gw.url, '/_warren/publish/batch', {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/x-ndjson' },
    body: lines.map((l) => JSON.stringify(l)).join('\n'),
  });
  assert.equal(res.status, 200, res.body);
  const body = JSON.parse(res.body) as { results: Answer[]; failed: number };
  assert.equal(body.failed, 0, res.body);
  return body.results;
}

async function publishSingle(gw: TestGateway, channels: string[], data: string): Promise<Answer> {
  const query = new URLSearchParams(channels.map((c): [string, string] => ['channel', c]));
  const res = await rawRequest(gw.url, `/_warren/publish?${query}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'text/plain' },
    body: data,
  });
  assert.equal(res.status, 200, res.body);
  return JSON.parse(res.body) as Answer;
}

/** Deletes the consumer queues a suite made through its gateway. */
async function deleteQueues(queues: string[]): Promise<void> {
  if (queues.length === 0) return;
  const conn = await amqp.connect(AMQP_URL);
  const ch = await conn.createChannel();
  for (const queue of queues) await ch.deleteQueue(queue);
  await conn.close();
}

describe('route counts', () => {
  before(() => enableManagement());

  for (const c of cases) {
    describe(`through ${c.name}`, () => {
      const prefix = unique('/rc-');
      const exchange = unique('warren-rc-');
      let gw: TestGateway;
      let producer: Producer | undefined;
      const queues: string[] = [];
      const streams: SseReader[] = [];

      const publish = async (channels: string[], data: string): Promise<Answer> => {
        if (c.via === 'endpoint') return publishSingle(gw, channels, data);
        if (c.via === 'batch') return (await publishBatch(gw, [{ channels, data }]))[0]!;
        return producer!.publish(data).to(channels);
      };

      /** An identified consumer of `channel`: a long-poll (its queue stays), or an SSE stream kept open. */
      const consume = async (channel: string, how: 'poll' | 'sse'): Promise<void> => {
        const consumerId = unique('c-');
        queues.push(consumerQueueName(consumerId, channel));
        if (how === 'poll') {
          assert.equal((await poll(gw.url, channel, { consumerId, timeout: 0 })).status, 204);
          return;
        }
        const sse = readSse(gw.url, channel, { 'consumer-id': consumerId });
        streams.push(sse);
        // A stream's 200 means its queue is bound (docs/protocol.md).
        assert.equal(await sse.status, 200);
      };

      /** Past the listing's age: the next count is of a listing taken after the consumers were made. */
      const settle = (): Promise<void> => (c.broker === 'rabbitmq' ? sleep(MAX_AGE_MS + 50) : Promise.resolve());

      before(async () => {
        const counted = c.broker === 'rabbitmq' ? { managementUrl: MANAGEMENT_URL, routeCountMaxAgeMs: MAX_AGE_MS } : {};
        gw = await startGateway(c.broker, {
          exchange,
          logRoutes: `${prefix}/logged/`,
          logShards: SHARDS,
          queueExpiresMs: 60_000,
          ...counted,
        });
        await until(() => gw.gateway.broker.ready, 'the broker is connected');
        if (c.via === 'amqp')
          producer = new Producer({ url: AMQP_URL, exchange, managementUrl: MANAGEMENT_URL, routeCountMaxAgeMs: MAX_AGE_MS });
        if (c.via === 'sdk-http') producer = new Producer({ url: gw.url, token: TOKEN });
      });
      after(async () => {
        for (const sse of streams) sse.close();
        await producer?.close();
        if (c.broker === 'rabbitmq') await deleteQueues(queues);
        await closeAndClean(gw, exchange, c.broker, SHARDS);
      });

      it('a channel nobody consumes: 0 queues, routed false', async () => {
        const channel = `${prefix}/nobody`;
        const result = await publish([channel], 'lost');
        assert.equal(result.routed, false);
        assert.equal(result.queues, 0);
        assert.deepEqual(result.routes, { [channel]: 0 });
      });

      it('three identified consumers (two long-polls, one SSE stream): 3 queues', async () => {
        const channel = `${prefix}/three`;
        await consume(channel, 'poll');
        await consume(channel, 'poll');
        await consume(channel, 'sse');
        await settle();
        const result = await publish([channel], 'found');
        assert.equal(result.routed, true);
        assert.equal(result.queues, 3);
        assert.deepEqual(result.routes, { [channel]: 3 });
      });

      it('several channels: a count per channel, and their sum', async () => {
        const one = `${prefix}/one`;
        const none = `${prefix}/none`;
        const anonymous = `${prefix}/anonymous`;
        await consume(one, 'poll');
        // Two anonymous listeners share their gateway's one fan-out queue.
        for (let i = 0; i < 2; i++) {
          const sse = readSse(gw.url, anonymous);
          streams.push(sse);
          assert.equal(await sse.status, 200);
        }
        await settle();
        const result = await publish([one, none, anonymous], 'some');
        assert.deepEqual(result.unrouted, [none]);
        assert.deepEqual(result.routes, { [one]: 1, [none]: 0, [anonymous]: 1 });
        assert.equal(result.queues, 2);
      });

      it('a logged channel: its log is one route', async () => {
        const channel = `${prefix}/logged/news`;
        // A publisher straight to RabbitMQ relies on a gateway having bound the log first.
        if (c.via === 'amqp') await publishSingle(gw, [channel], 'bind');
        await settle();
        const result = await publish([channel], 'kept');
        assert.equal(result.routed, true);
        assert.deepEqual(result.routes, { [channel]: 1 });
      });

      if (c.via === 'batch') {
        it('each message of a batch gets its own count', async () => {
          const a = `${prefix}/batch-a`;
          const b = `${prefix}/batch-b`;
          await consume(a, 'poll');
          await consume(a, 'poll');
          await settle();
          const results = await publishBatch(gw, [
            { channels: [a], data: '1' },
            { channels: [b], data: '2' },
            { channels: [a, b], data: '3' },
          ]);
          assert.deepEqual(
            results.map((r) => [r.queues, r.routes]),
            [
              [2, { [a]: 2 }],
              [0, { [b]: 0 }],
              [2, { [a]: 2, [b]: 0 }],
            ],
          );
        });
      }
    });
  }

  describe('on RabbitMQ, from a listing at most --route-count-max-age old', () => {
    const prefix = unique('/rc-age-');
    const exchange = unique('warren-rc-age-');
    const queues: string[] = [];
    let gw: TestGateway;
    before(async () => {
      gw = await startGateway('rabbitmq', { exchange, managementUrl: MANAGEMENT_URL, routeCountMaxAgeMs: 10_000, queueExpiresMs: 60_000 });
      await until(() => gw.gateway.broker.ready, 'the broker is connected');
    });
    after(async () => {
      await deleteQueues(queues);
      await closeAndClean(gw, exchange, 'rabbitmq', 0);
    });

    it('concurrent publishes share one listing, and routed bounds a stale count', async () => {
      const channel = `${prefix}/late`;
      const started = Date.now();
      const first = await Promise.all(Array.from({ length: 20 }, (_, i) => publishSingle(gw, [channel], String(i))));
      assert.ok(first.every((r) => r.routed === false && r.queues === 0));
      assert.equal(gw.gateway.stats().routeCounts?.listings, 1, 'one listing for 20 concurrent publishes');
      for (let i = 0; i < 3; i++) {
        const consumerId = unique('c-');
        queues.push(consumerQueueName(consumerId, channel));
        assert.equal((await poll(gw.url, channel, { consumerId, timeout: 0 })).status, 204);
      }
      const second = await publishSingle(gw, [channel], 'late');
      // Within the 10 s of the first listing (which saw no queue): the count
      // comes from it, raised to 1 because RabbitMQ did route the message.
      assert.ok(Date.now() - started < 9_000, 'the test ran within the listing age');
      assert.equal(second.routed, true);
      assert.equal(second.queues, 1);
      assert.equal(gw.gateway.stats().routeCounts?.listings, 1);
    });
  });

  describe('a management API that cannot be read never fails a publish', () => {
    const exchange = unique('warren-rc-down-');
    /** Accepts connections and never answers. */
    let silent: Server;
    const sockets: Socket[] = [];
    before(async () => {
      silent = createServer((s) => sockets.push(s.on('error', () => undefined)));
      await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    });
    after(async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
      const conn = await amqp.connect(AMQP_URL);
      await (await conn.createChannel()).deleteExchange(exchange);
      await conn.close();
    });

    const silentUrl = (): string => `http://127.0.0.1:${(silent.address() as { port: number }).port}`;
    const down = [
      { name: 'nothing listening', url: () => 'http://127.0.0.1:1' },
      { name: 'wrong credentials (401)', url: () => MANAGEMENT_URL.replace(/\/\/[^@/]*@/, '//guest:wrong@') },
      { name: 'not the management API (404)', url: () => `${MANAGEMENT_URL}/not-the-api/` },
      { name: 'no answer (timeout)', url: silentUrl },
    ];

    for (const d of down) {
      it(`gateway, ${d.name}: published, no count, one warning`, async () => {
        const warnings: string[] = [];
        const logger: Logger = {
          debug: () => undefined,
          info: () => undefined,
          warn: (msg) => void warnings.push(msg),
          error: () => undefined,
        };
        const gw = await startGateway('rabbitmq', { exchange, managementUrl: d.url(), routeCountMaxAgeMs: 100, logger });
        try {
          await until(() => gw.gateway.broker.ready, 'the broker is connected');
          for (let i = 0; i < 3; i++) {
            const began = Date.now();
            const result = await publishSingle(gw, ['/rc-down'], String(i));
            assert.equal(result.routed, false);
            assert.equal('queues' in result, false, JSON.stringify(result));
            assert.equal('routes' in result, false);
            assert.ok(Date.now() - began < 4_000, `publish ${i} took ${Date.now() - began} ms`);
            await sleep(110);
          }
          assert.equal(warnings.filter((w) => /management API/.test(w)).length, 1, JSON.stringify(warnings));
        } finally {
          await gw.close();
        }
      });
    }

    it('producer SDK over AMQP: published, no count, one process warning', async () => {
      const seen: Error[] = [];
      const onWarning = (w: Error): void => void seen.push(w);
      process.on('warning', onWarning);
      const producer = new Producer({ url: AMQP_URL, exchange, managementUrl: 'http://127.0.0.1:1', routeCountMaxAgeMs: 50 });
      try {
        for (let i = 0; i < 3; i++) {
          const result = await producer.publish(String(i)).to('/rc-down');
          assert.equal(result.routed, false);
          assert.equal('queues' in result, false, JSON.stringify(result));
          await sleep(60);
        }
        const silentProducer = new Producer({ url: AMQP_URL, exchange, managementUrl: silentUrl(), timeoutMs: 10_000 });
        const began = Date.now();
        const result = await silentProducer.publish('x').to('/rc-down');
        await silentProducer.close();
        assert.equal('queues' in result, false);
        assert.ok(Date.now() - began < 4_000, `a publish waited ${Date.now() - began} ms for a silent management API`);
        await sleep(10); // warnings are emitted on the next tick
        assert.equal(
          seen.filter((w) => (w as NodeJS.ErrnoException).code === 'WARREN_ROUTE_COUNT').length,
          2,
          seen.map((w) => w.message).join('\n'),
        );
      } finally {
        process.off('warning', onWarning);
        await producer.close();
      }
    });
  });

  describe('RouteCounts on the management API itself', () => {
    it("without credentials in the management URL, uses the AMQP URL's user", async () => {
      const exchange = unique('rc-creds-');
      const conn = await amqp.connect(AMQP_URL);
      try {
        const ch = await conn.createChannel();
        await ch.assertExchange(exchange, 'direct', { durable: false });
        const { queue } = await ch.assertQueue('', { exclusive: true });
        await ch.bindQueue(queue, exchange, '/k');
        const bare = MANAGEMENT_URL.replace(/\/\/[^@/]*@/, '//');
        assert.notEqual(bare, MANAGEMENT_URL);
        const counts = new RouteCounts({ managementUrl: bare, amqpUrl: AMQP_URL, exchange });
        assert.equal(await counts.count('/k'), 1);
        assert.equal(await counts.count('/other'), 0);
        const stats = counts.stats();
        assert.deepEqual({ ...stats, lastListingMs: 0 }, { listings: 1, failures: 0, bindings: 1, lastListingMs: 0 });
        assert.ok(stats.lastListingMs > 0 && stats.lastListingMs < 2000, String(stats.lastListingMs));
        await ch.deleteExchange(exchange);
      } finally {
        await conn.close();
      }
    });

    it('on a topic exchange, counts the queues RabbitMQ routes to (patterns, a queue bound twice once)', async () => {
      const exchange = unique('rc-topic-');
      const conn = await amqp.connect(AMQP_URL);
      try {
        const ch = await conn.createConfirmChannel();
        await ch.assertExchange(exchange, 'topic', { durable: false });
        const patterns = [['a.*', 'a.b'], ['a.#'], ['a.b'], ['#.c']];
        const queues: string[] = [];
        for (const keys of patterns) {
          const { queue } = await ch.assertQueue('', { exclusive: true });
          queues.push(queue);
          for (const key of keys) await ch.bindQueue(queue, exchange, key);
        }
        const counts = new RouteCounts({ managementUrl: MANAGEMENT_URL, amqpUrl: AMQP_URL, exchange, maxAgeMs: 60_000 });
        for (const key of ['a.b', 'a', 'a.b.c', 'x.c', 'x']) {
          const before = await Promise.all(queues.map(async (q) => (await ch.checkQueue(q)).messageCount));
          ch.publish(exchange, key, Buffer.from('x'));
          await ch.waitForConfirms();
          const after = await Promise.all(queues.map(async (q) => (await ch.checkQueue(q)).messageCount));
          const routedTo = after.filter((n, i) => n > before[i]!).length;
          assert.equal(await counts.count(key), routedTo, `key ${key}`);
        }
        await ch.deleteExchange(exchange);
      } finally {
        await conn.close();
      }
    });
  });

  describe('options', () => {
    it('a gateway refuses --management-url without --amqp-url', async () => {
      await assert.rejects(
        startGateway('memory', { managementUrl: MANAGEMENT_URL }),
        (err: unknown) => err instanceof OptionError && /--management-url .* needs --amqp-url/.test(err.message),
      );
    });

    it('a gateway refuses a management URL that is not http(s)', async () => {
      await assert.rejects(
        startGateway('rabbitmq', { managementUrl: 'amqp://127.0.0.1' }),
        (err: unknown) => err instanceof OptionError && /--management-url .* must start with http/.test(err.message),
      );
    });

    it('the producer refuses managementUrl with a gateway URL (the gateway counts)', () => {
      assert.throws(
        () => new Producer({ url: 'http://127.0.0.1:4000', token: TOKEN, managementUrl: MANAGEMENT_URL }),
        (err: unknown) => err instanceof TypeError && /the gateway counts/.test(err.message),
      );
    });
  });
});
