// Identified SSE and WebSocket streams on logged channels (docs/channel-logs.md,
// "Positions of streams"): a consumer id keeps a position in the
// `warren:positions` stream, not a queue; it resumes from there on any
// gateway, and catch-ups the tail still holds are served from memory.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import amqp from 'amqplib';
import { WebSocket } from 'ws';
import { channelLogName, positionsLogName } from '@warren/protocol';
import {
  AMQP_URL,
  BROKERS,
  httpPublish,
  rabbitQueues,
  readSse,
  spawnServe,
  startGateway,
  TOKEN,
  unique,
  until,
  type SseReader,
  type TestGateway,
} from './support/index.js';
import { publishAll, range } from './support/channel-logs.js';
import { FaultProxy } from './support/fault-proxy.js';
import { RECEIPT_MS } from '#gateway/sources/queue-subscription.js';

const SHARDS = 1;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Long enough for what an SSE stream was written to count as received (docs/delivery.md). */
const received = (): Promise<void> => sleep(RECEIPT_MS + 300);

/** Deletes what the test gateways declared: the shard stream, the positions stream and (RabbitMQ) the exchange. */
async function clean(kind: string, exchange: string, options: Record<string, unknown>): Promise<void> {
  const gw = await startGateway(kind as 'memory', options);
  try {
    for (let shard = 0; shard < SHARDS; shard++) await gw.gateway.broker.deleteLog(channelLogName(shard, exchange));
    await gw.gateway.broker.deleteLog(positionsLogName(exchange));
  } finally {
    await gw.close();
  }
  if (kind === 'rabbitmq') {
    const conn = await amqp.connect(AMQP_URL);
    await (await conn.createChannel()).deleteExchange(exchange);
    await conn.close();
  }
}

/** Opens an SSE stream as `consumer` and waits until it is subscribed. */
async function openAs(gw: TestGateway, channel: string, consumer: string, headers: Record<string, string> = {}): Promise<SseReader> {
  const before = gw.gateway.stats().logs.subscribed;
  const reader = readSse(gw.url, channel, { 'consumer-id': consumer, ...headers });
  assert.equal(await reader.status, 200);
  await until(() => gw.gateway.stats().logs.subscribed > before, 'the stream to subscribe');
  return reader;
}

/** Closes a stream and waits until the gateway has let it go (its position recorded). */
async function closeStream(gw: TestGateway, reader: SseReader): Promise<void> {
  reader.close();
  await until(() => gw.gateway.stats().streams.identified === 0, 'the gateway to end the stream');
}

const data = (reader: SseReader): string[] => reader.events.filter((e) => e.event === undefined).map((e) => e.data);

for (const kind of BROKERS) {
  describe(`identified streams on logged channels on the ${kind} broker`, () => {
    let gw: TestGateway;
    const exchange = unique('warren-test-');
    const options = { logRoutes: '/logged/', exchange, logShards: SHARDS };

    before(async () => {
      gw = await startGateway(kind, options);
    });
    after(async () => {
      await gw.close();
      await clean(kind, exchange, options);
    });

    it('an SSE consumer without Last-Event-ID gets exactly what was published while it was away, and has no queue', async () => {
      const channel = `/logged/${unique('away-')}`;
      const consumer = unique('c-');
      const first = await openAs(gw, channel, consumer);
      await publishAll(gw, channel, range(0, 10));
      await until(() => data(first).length === 10, 'the first 10');
      await received();
      await closeStream(gw, first);
      await publishAll(gw, channel, range(10, 310));
      // As curl does: the consumer id and nothing else.
      const again = await openAs(gw, channel, consumer);
      await until(() => data(again).length >= 300, 'the 300 published while away');
      await publishAll(gw, channel, ['live']);
      await until(() => data(again).length >= 301, 'a live one');
      await sleep(100);
      await closeStream(gw, again);
      assert.deepEqual(data(again), [...range(10, 310), 'live']);
      if (kind === 'rabbitmq') assert.deepEqual(await rabbitQueues(`warren:${consumer}`), [], 'no queue for the consumer');
    });

    it("a consumer's first stream places it at the end of the log: what comes after its first visit is kept for it", async () => {
      const channel = `/logged/${unique('first-')}`;
      const consumer = unique('c-');
      await publishAll(gw, channel, ['before']);
      const first = await openAs(gw, channel, consumer);
      // Placed once the tail read the stream's mark back.
      await sleep(300);
      await closeStream(gw, first);
      assert.deepEqual(data(first), []);
      await publishAll(gw, channel, range(0, 5));
      const again = await openAs(gw, channel, consumer);
      await until(() => data(again).length >= 5, 'the 5 published after the first visit');
      await sleep(100);
      await closeStream(gw, again);
      assert.deepEqual(data(again), range(0, 5));
    });

    it('a Last-Event-ID the client sends wins over the position', async () => {
      const channel = `/logged/${unique('wins-')}`;
      const consumer = unique('c-');
      const first = await openAs(gw, channel, consumer);
      await publishAll(gw, channel, range(0, 20));
      await until(() => data(first).length === 20, 'the 20');
      await closeStream(gw, first);
      const again = await openAs(gw, channel, consumer, { 'last-event-id': first.events[9]!.id! });
      await until(() => data(again).length >= 10, 'the 10 after the id');
      await sleep(100);
      await closeStream(gw, again);
      assert.deepEqual(data(again), range(10, 20));
    });

    it('a recent resume is served from the tail’s memory (no reader, no mark), a history from the log', async () => {
      const channel = `/logged/${unique('memory-')}`;
      const consumer = unique('c-');
      const first = await openAs(gw, channel, consumer);
      await publishAll(gw, channel, range(0, 5));
      await until(() => data(first).length === 5, 'the 5');
      await received();
      await closeStream(gw, first);
      await publishAll(gw, channel, range(5, 25));
      const { fromMemory, fromLog } = gw.gateway.stats().logs;
      const again = await openAs(gw, channel, consumer);
      await until(() => data(again).length >= 20, 'the 20 missed');
      await closeStream(gw, again);
      assert.deepEqual(data(again), range(5, 25));
      assert.equal(gw.gateway.stats().logs.fromMemory, fromMemory + 1, 'served from memory');
      assert.equal(gw.gateway.stats().logs.fromLog, fromLog, 'no reader of its own');
      // A history needs the end of the log, which the tail may not have read yet: it reads the log.
      const late = readSse(gw.url, `${channel}?history=3`);
      await until(() => data(late).length >= 3, 'the last 3');
      late.close();
      assert.deepEqual(data(late), range(22, 25));
      assert.equal(gw.gateway.stats().logs.fromMemory, fromMemory + 1);
      assert.equal(gw.gateway.stats().logs.fromLog, fromLog + 1);
    });

    it('an event written into a dying connection is not counted as received: the next stream gets it', async () => {
      const proxy = new FaultProxy({ targetHost: '127.0.0.1', targetPort: Number(new URL(gw.url).port) });
      const proxied = `http://127.0.0.1:${await proxy.listen()}`;
      try {
        const channel = `/logged/${unique('dying-')}`;
        const consumer = unique('c-');
        const before = gw.gateway.stats().logs.subscribed;
        const first = readSse(proxied, channel, { 'consumer-id': consumer });
        assert.equal(await first.status, 200);
        await until(() => gw.gateway.stats().logs.subscribed > before, 'the stream to subscribe');
        await publishAll(gw, channel, range(0, 3));
        await until(() => data(first).length === 3, 'the first 3');
        await received();
        // The path stalls: m3's write succeeds into the gateway's socket, the client never sees it; then it dies.
        proxy.blackhole(true);
        await publishAll(gw, channel, ['m3']);
        await sleep(200);
        proxy.cut();
        proxy.blackhole(false);
        await until(() => gw.gateway.stats().streams.identified === 0, 'the gateway to see the stream end');
        await publishAll(gw, channel, ['m4']);
        // As curl: the consumer id only.
        const again = await openAs(gw, channel, consumer);
        await until(() => data(again).length >= 2, 'm3 and m4');
        await sleep(100);
        await closeStream(gw, again);
        assert.deepEqual(data(first), range(0, 3));
        assert.deepEqual(data(again), ['m3', 'm4']);
      } finally {
        await proxy.close();
      }
    });

    it('a warren.v1 socket of a consumer resumes from its position too', async () => {
      const channel = `/logged/${unique('ws-')}`;
      const consumer = unique('c-');
      const subscribe = async (): Promise<{ ws: WebSocket; got: string[] }> => {
        const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/_warren/ws`, 'warren.v1', { headers: { 'consumer-id': consumer } });
        const got: string[] = [];
        let subscribed = false;
        ws.on('message', (raw) => {
          const frame = JSON.parse(String(raw)) as { type: string; data?: string };
          if (frame.type === 'message') got.push(frame.data!);
          if (frame.type === 'subscribed') subscribed = true;
        });
        await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
        ws.send(JSON.stringify({ type: 'subscribe', channel }));
        await until(() => subscribed, 'subscribed');
        return { ws, got };
      };
      const first = await subscribe();
      await publishAll(gw, channel, range(0, 10));
      await until(() => first.got.length === 10, 'the first 10');
      first.ws.close();
      await until(() => gw.gateway.stats().streams.identified === 0, 'the gateway to end the stream');
      await publishAll(gw, channel, range(10, 60));
      const again = await subscribe();
      await until(() => again.got.length >= 50, 'the 50 published while away');
      await sleep(100);
      again.ws.close();
      assert.deepEqual(again.got, range(10, 60));
      if (kind === 'rabbitmq') assert.deepEqual(await rabbitQueues(`warren:${consumer}`), [], 'no queue for the consumer');
    });
  });
}

describe('stream positions across gateway processes on RabbitMQ', () => {
  it('a consumer moves to another gateway, and after a kill -9 resumes there from the last recorded position', async () => {
    const exchange = unique('warren-test-');
    const args = [
      '--amqp-url',
      AMQP_URL,
      '--publish-token',
      TOKEN,
      '--log-routes',
      '/logged/',
      '--exchange',
      exchange,
      '--log-shards',
      String(SHARDS),
    ];
    const a = await spawnServe([...args, '--log-position-interval', '200ms']);
    const b = await spawnServe(args);
    const channel = `/logged/${unique('kill-')}`;
    const consumer = unique('c-');
    const publish = async (texts: string[]): Promise<void> => {
      for (const text of texts) assert.equal((await httpPublish(b.url, channel, text)).status, 200);
    };
    try {
      // On b first: placed, then moved to a by a clean close.
      const onB = readSse(b.url, channel, { 'consumer-id': consumer });
      assert.equal(await onB.status, 200);
      await sleep(500);
      await publish(range(0, 10));
      await until(() => data(onB).length === 10, '10 on b');
      await received();
      onB.close();
      await sleep(500);
      await publish(range(10, 20));
      const onA = readSse(a.url, channel, { 'consumer-id': consumer });
      await until(() => data(onA).length >= 10, 'the 10 missed, on a');
      await publish(range(20, 50));
      await until(() => data(onA).length >= 40, '30 live on a');
      // Received, and past a's interval: the position is recorded. Then a dies without a word.
      await received();
      await sleep(400);
      a.child.kill('SIGKILL');
      await new Promise((resolve) => a.child.once('close', resolve));
      onA.close();
      await publish(range(50, 60));
      const back = readSse(b.url, channel, { 'consumer-id': consumer });
      await until(() => data(back).length >= 10, 'the 10 published after the kill, on b');
      await sleep(200);
      back.close();
      assert.deepEqual(data(onB), range(0, 10));
      assert.deepEqual(data(onA), range(10, 50));
      assert.deepEqual(data(back), range(50, 60));
      assert.deepEqual(await rabbitQueues(`warren:${consumer}`), [], 'no queue for the consumer');
    } finally {
      await a.stop();
      await b.stop();
      await clean('rabbitmq', exchange, { logRoutes: '/logged/', exchange, logShards: SHARDS });
    }
  });
});
