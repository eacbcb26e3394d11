// Long-poll on logged channels (docs/channel-logs.md, "Long-poll and
// positions"): `?since=` for anyone, and identified consumers that keep a
// position in the `warren:positions` stream instead of a queue each.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import amqp from 'amqplib';
import { channelLogName, positionsLogName } from '@warren/protocol';
import { AMQP_URL, BROKERS, poll, rabbitQueues, startGateway, unique, until, type PollResult, type TestGateway } from './support/index.js';
import { publishAll, range } from './support/channel-logs.js';

// One shard: each test gateway declares two streams (the shard and the positions).
const SHARDS = 1;

const header = (res: PollResult, name: string): string | undefined => res.headers[name] as string | undefined;

/** Deletes what a test gateway declared (its streams and, on RabbitMQ, its exchange). */
async function clean(gw: TestGateway, exchange: string, kind: string): Promise<void> {
  for (let shard = 0; shard < SHARDS; shard++) await gw.gateway.broker.deleteLog(channelLogName(shard, exchange));
  await gw.gateway.broker.deleteLog(positionsLogName(exchange));
  if (kind === 'rabbitmq') {
    const conn = await amqp.connect(AMQP_URL);
    await (await conn.createChannel()).deleteExchange(exchange);
    await conn.close();
  }
}

/** Polls `count` messages for `consumer`, each answer at once (they are waiting), alternating over `gateways`. */
async function take(gateways: TestGateway[], channel: string, consumer: string, count: number): Promise<string[]> {
  const got: string[] = [];
  for (let i = 0; i < count; i++) {
    const res = await poll(gateways[i % gateways.length]!.url, channel, { consumerId: consumer, timeout: 5 });
    assert.equal(res.status, 200, `poll ${i}: ${res.status} ${res.body}`);
    assert.match(header(res, 'message-id')!, /^\d+\.[0-9a-f]{8}$/);
    got.push(res.body);
  }
  return got;
}

for (const kind of BROKERS) {
  describe(`long-poll on logged channels on the ${kind} broker`, () => {
    let gw: TestGateway;
    const exchange = unique('warren-test-');
    const options = { logRoutes: '/logged/', exchange, logShards: SHARDS };

    before(async () => {
      gw = await startGateway(kind, options);
    });
    after(async () => {
      await gw.close();
      const cleaner = await startGateway(kind, options);
      await clean(cleaner, exchange, kind);
      await cleaner.close();
    });

    it('an identified consumer gets 1,000 messages published in bursts between its polls, in order, none twice, with no queue', async () => {
      const channel = `/logged/${unique('bursts-')}`;
      const consumer = unique('c-');
      // The first poll places the consumer at the end of the log.
      assert.equal((await poll(gw.url, channel, { consumerId: consumer, timeout: 0 })).status, 204);
      const got: string[] = [];
      for (let sent = 0; sent < 1000;) {
        const burst = Math.min(1000 - sent, 1 + ((sent * 7919) % 97));
        await publishAll(gw, channel, range(sent, sent + burst));
        got.push(...(await take([gw], channel, consumer, burst)));
        sent += burst;
      }
      assert.deepEqual(got, range(0, 1000));
      assert.equal((await poll(gw.url, channel, { consumerId: consumer, timeout: 0 })).status, 204, 'nothing twice');
      if (kind === 'rabbitmq') assert.deepEqual(await rabbitQueues(`warren:${consumer}`), [], 'no queue for the consumer');
    });

    it('an anonymous poller walks the log with ?history= and ?since=', async () => {
      const channel = `/logged/${unique('since-')}`;
      await publishAll(gw, channel, range(0, 5));
      let res = await poll(gw.url, channel, { query: '?history=3' });
      assert.equal(res.body, 'm2');
      const got = [res.body];
      for (let i = 0; i < 2; i++) {
        res = await poll(gw.url, channel, { query: `?since=${header(res, 'message-id')}` });
        got.push(res.body);
      }
      assert.deepEqual(got, ['m2', 'm3', 'm4']);
      const waiting = poll(gw.url, channel, { query: `?since=${header(res, 'message-id')}&timeout=10` });
      await new Promise((r) => setTimeout(r, 300));
      await publishAll(gw, channel, ['live']);
      assert.equal((await waiting).body, 'live');
    });

    it('an identified consumer polling with ?since= first, on a fresh gateway, gets the message and keeps it as its position', async () => {
      // A fresh gateway: nothing has read the positions stream yet (a ?since= poll skips looking the position up).
      const fresh = await startGateway(kind, options);
      try {
        const channel = `/logged/${unique('since-id-')}`;
        const consumer = unique('c-');
        await publishAll(fresh, channel, range(0, 3));
        const first = await poll(fresh.url, channel, { query: '?history=3' });
        assert.equal(first.body, 'm0');
        const res = await poll(fresh.url, channel, { consumerId: consumer, query: `?since=${header(first, 'message-id')}` });
        assert.equal(res.status, 200, res.body);
        assert.equal(res.body, 'm1');
        const next = await poll(fresh.url, channel, { consumerId: consumer, timeout: 5 });
        assert.equal(next.body, 'm2', 'the ?since= answer became the position');
      } finally {
        await fresh.close();
      }
    });

    it('an unknown id is answered with warren-reset and a position to poll from', async () => {
      const channel = `/logged/${unique('reset-')}`;
      await publishAll(gw, channel, ['before']);
      const res = await poll(gw.url, channel, { query: '?since=not-an-event-id' });
      assert.equal(res.status, 200);
      assert.equal(header(res, 'warren-event'), 'warren-reset');
      assert.deepEqual(JSON.parse(res.body), { reason: 'unknown-position' });
      await publishAll(gw, channel, ['after']);
      const next = await poll(gw.url, channel, { query: `?since=${header(res, 'message-id')}&timeout=5` });
      assert.equal(next.body, 'after');
    });
  });
}

describe('long-poll positions across gateways on RabbitMQ', () => {
  it('two gateways take turns, then a restart in the middle loses nothing', async () => {
    const exchange = unique('warren-test-');
    const options = { logRoutes: '/logged/', exchange, logShards: SHARDS };
    const channel = `/logged/${unique('restart-')}`;
    const consumer = unique('c-');
    let a = await startGateway('rabbitmq', options);
    const b = await startGateway('rabbitmq', options);
    try {
      assert.equal((await poll(a.url, channel, { consumerId: consumer, timeout: 0 })).status, 204);
      await publishAll(a, channel, range(0, 150));
      // A poll on one gateway right after a poll on the other starts where that one stopped.
      const got = await take([a, b], channel, consumer, 60);
      got.push(...(await take([a], channel, consumer, 30)));
      await a.close();
      got.push(...(await take([b], channel, consumer, 30)));
      await b.close();
      a = await startGateway('rabbitmq', options);
      got.push(...(await take([a], channel, consumer, 30)));
      assert.deepEqual(got, range(0, 150));
      assert.equal((await poll(a.url, channel, { consumerId: consumer, timeout: 0 })).status, 204);
      assert.deepEqual(await rabbitQueues(`warren:${consumer}`), []);
    } finally {
      await clean(a, exchange, 'rabbitmq');
      await a.close();
      await b.close();
    }
  });
});

describe('long-poll positions when the answer is not written', () => {
  it('a client that hangs up halfway through an answer gets that message again on its next poll', async () => {
    const exchange = unique('warren-test-');
    const gw = await startGateway('memory', { logRoutes: '/logged/', exchange, logShards: SHARDS, maxMessageBytes: 32 * 1024 * 1024 });
    try {
      const channel = `/logged/${unique('hangup-')}`;
      const consumer = unique('c-');
      assert.equal((await poll(gw.url, channel, { consumerId: consumer, timeout: 0 })).status, 204);
      // Too large for loopback's socket buffers: the answer cannot be written while the client does not read.
      const big = 'x'.repeat(20 * 1024 * 1024);
      await publishAll(gw, channel, ['small', big, 'after']);
      assert.equal((await poll(gw.url, channel, { consumerId: consumer })).body, 'small');
      const before = gw.gateway.stats().longPoll.clientGone;
      const url = new URL(gw.url);
      const socket = connect(Number(url.port), url.hostname);
      socket.on('error', () => undefined);
      socket.once('data', () => socket.destroy());
      socket.write(`GET ${channel}?timeout=10 HTTP/1.1\r\nHost: x\r\nConsumer-Id: ${consumer}\r\n\r\n`);
      await until(() => gw.gateway.stats().longPoll.clientGone > before, 'the poll to see its client gone');
      const again = await poll(gw.url, channel, { consumerId: consumer });
      assert.equal(again.body.length, big.length, 'the message not written is answered again');
      assert.equal((await poll(gw.url, channel, { consumerId: consumer })).body, 'after');
    } finally {
      await gw.close();
    }
  });
});

describe('long-poll of a position older than the log retains', () => {
  it('answers the first message retained with Warren-Gap: history-gone', async () => {
    const gw = await startGateway('memory', {
      logRoutes: '/logged/',
      exchange: unique('warren-test-'),
      logShards: SHARDS,
      logMaxBytes: 64 * 1024,
    });
    try {
      const channel = `/logged/${unique('gone-')}`;
      await publishAll(gw, channel, ['first']);
      const first = await poll(gw.url, channel, { query: '?history=1' });
      assert.equal(first.body, 'first');
      assert.equal(header(first, 'warren-gap'), undefined);
      // 64 KiB retained: 200 messages of 1 KiB push the first one out.
      const pad = 'x'.repeat(1024);
      await publishAll(
        gw,
        channel,
        range(0, 200).map((m) => pad + m),
      );
      const res = await poll(gw.url, channel, { query: `?since=${header(first, 'message-id')}` });
      assert.equal(res.status, 200);
      assert.equal(header(res, 'warren-gap'), 'history-gone');
      const oldest = Number(res.body.slice(pad.length + 1));
      assert.ok(oldest > 0 && oldest < 199, `some history is gone (the oldest retained is m${oldest})`);
      // Walking on from there: later messages, in order (the log is full, so each poll's mark may push out one more).
      const next = await poll(gw.url, channel, { query: `?since=${header(res, 'message-id')}` });
      assert.ok(Number(next.body.slice(pad.length + 1)) > oldest, next.body.slice(pad.length));
    } finally {
      await gw.close();
    }
  });
});
