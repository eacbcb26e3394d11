// Server-Sent Events on logged channels (docs/channel-logs.md): history for
// late subscribers, resume after Last-Event-ID with no gap or duplicate at
// the seam, and the signals for a position the log no longer knows.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import amqp from 'amqplib';
import { WebSocket } from 'ws';
import { channelLogName, logShardOf } from '@warren/protocol';
import { AMQP_URL, BROKERS, httpPublish, readSse, startGateway, unique, until, type SseReader, type TestGateway } from './support/index.js';
import { closeAndClean, publishAll, range } from './support/channel-logs.js';

const SHARDS = 4;

/** Publishes `texts` one after another through the gateway. */
const messages = (reader: SseReader) => reader.events.filter((e) => e.event === undefined);

for (const kind of BROKERS) {
  describe(`logged channels over SSE on the ${kind} broker`, () => {
    let gw: TestGateway;
    const exchange = unique('warren-test-');
    const logOf = (channel: string): string => channelLogName(logShardOf(channel, SHARDS), exchange);
    /** Opens a stream and waits until it is subscribed. */
    const open = async (path: string, headers: Record<string, string> = {}, on = gw): Promise<SseReader> => {
      const before = on.gateway.stats().logs.subscribed;
      const reader = readSse(on.url, path, headers);
      assert.equal(await reader.status, 200);
      await until(() => on.gateway.stats().logs.subscribed > before, 'the stream to subscribe');
      return reader;
    };

    before(async () => {
      gw = await startGateway(kind, { logRoutes: '/logged/', exchange, logShards: SHARDS });
    });
    after(() => closeAndClean(gw, exchange, kind, SHARDS));

    it('a late subscriber with ?history=50 gets the last 50 messages, then live ones, no gap or duplicate', async () => {
      const channel = `/logged/${unique('late-')}`;
      await publishAll(gw, channel, range(0, 80));
      const reader = await open(`${channel}?history=50`);
      await until(() => reader.events.length >= 50, '50 past messages');
      await publishAll(gw, channel, range(80, 85));
      await until(() => reader.events.length >= 55, '5 live messages');
      await new Promise((r) => setTimeout(r, 200));
      reader.close();
      assert.deepEqual(
        reader.events.map((e) => e.data),
        range(30, 85),
      );
      for (const e of reader.events) assert.match(e.id!, /^\d+\.[0-9a-f]{8}$/);
    });

    it('a subscriber that disconnects while 500 are published gets exactly those 500 with Last-Event-ID', async () => {
      const channel = `/logged/${unique('away-')}`;
      const first = await open(channel);
      await publishAll(gw, channel, range(0, 10));
      await until(() => first.events.length === 10, 'the first 10');
      first.close();
      const lastId = first.events.at(-1)!.id!;
      await publishAll(gw, channel, range(10, 510));
      const again = await open(channel, { 'last-event-id': lastId });
      await until(() => again.events.length >= 500, 'the 500 published while away', 30_000);
      await publishAll(gw, channel, ['live']);
      await until(() => again.events.length >= 501, 'a live one after them');
      await new Promise((r) => setTimeout(r, 200));
      again.close();
      assert.deepEqual(
        again.events.map((e) => e.data),
        [...range(10, 510), 'live'],
      );
    });

    it('an id from a log deleted and declared since is answered with warren-reset, then live messages', async () => {
      const channel = `/logged/${unique('reset-')}`;
      const first = await open(channel);
      await publishAll(gw, channel, ['a', 'b', 'c']);
      await until(() => first.events.length === 3, 'three messages');
      first.close();
      await until(() => gw.gateway.stats().logs.subscribers === 0, 'the stream to stop');
      const tails = gw.gateway.stats().logs.tails;
      await gw.gateway.broker.deleteLog(logOf(channel));
      // The shard's tail learns that its log is gone (RabbitMQ cancels its consumer).
      await until(() => gw.gateway.stats().logs.tails < tails, 'the tail to end');
      await publishAll(gw, channel, ['new']); // declares the log again
      for (const old of [first.events[0]!.id!, first.events[2]!.id!]) {
        // Offset 0 now holds another entry; the last offset is past the new log's end.
        const again = await open(channel, { 'last-event-id': old });
        await until(() => again.events.length >= 1, 'the reset signal');
        await publishAll(gw, channel, ['after']);
        await until(() => again.events.length >= 2, 'a live message after the reset');
        again.close();
        assert.equal(again.events[0]!.event, 'warren-reset', old);
        assert.deepEqual(JSON.parse(again.events[0]!.data), { reason: 'unknown-position' });
        assert.match(again.events[0]!.id!, /^\d+\.[0-9a-f]{8}$/);
        assert.deepEqual(
          messages(again).map((e) => e.data),
          ['after'],
        );
      }
    });

    it('a warren.v1 socket resumes a logged channel from the event id of its last message frame', async () => {
      const channel = `/logged/${unique('ws-')}`;
      await publishAll(gw, channel, range(0, 5));
      const probe = await open(`${channel}?history=5`);
      await until(() => probe.events.length === 5, 'the five messages');
      probe.close();
      const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/_warren/ws`, 'warren.v1');
      const frames: Array<{ type: string; data?: string; id?: string }> = [];
      ws.on('message', (data) => frames.push(JSON.parse(String(data))));
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      ws.send(JSON.stringify({ type: 'subscribe', channel, lastEventId: probe.events[1]!.id }));
      await until(() => frames.filter((f) => f.type === 'message').length === 3, 'the three after it');
      await publishAll(gw, channel, ['live']);
      await until(() => frames.filter((f) => f.type === 'message').length === 4, 'a live one');
      ws.close();
      const got = frames.filter((f) => f.type === 'message');
      assert.deepEqual(
        got.map((f) => f.data),
        ['m2', 'm3', 'm4', 'live'],
      );
      assert.deepEqual(
        got.slice(0, 3).map((f) => f.id),
        probe.events.slice(2).map((e) => e.id),
      );
    });

    it('a message published to a plain and a logged channel at once keeps the log event id on the logged stream', async () => {
      // One publish, two channels: the embedded broker hands the same message object to the plain
      // channel's stream and to the log, which gives it its own event id. The plain stream's
      // encoding of the message must not be reused for the logged stream (it would carry the publish id).
      const plain = `/${unique('plain-')}`;
      const channel = `/logged/${unique('both-')}`;
      const plainReader = readSse(gw.url, plain);
      assert.equal(await plainReader.status, 200);
      await until(() => gw.gateway.stats().fanOut.subscribers >= 1, 'the plain stream');
      const logged = await open(channel);
      for (let i = 0; i < 3; i++) {
        assert.equal((await httpPublish(gw.url, [plain, channel], `m${i}`, { 'message-id': `pub-${i}` })).status, 200);
      }
      await until(() => messages(logged).length === 3 && messages(plainReader).length === 3, 'three messages on each stream');
      plainReader.close();
      logged.close();
      assert.deepEqual(
        messages(plainReader).map((e) => e.id),
        ['pub-0', 'pub-1', 'pub-2'],
      );
      for (const e of messages(logged)) assert.match(e.id!, /^\d+\.[0-9a-f]{8}$/, `a log event id, not ${e.id}`);
      // And the id resumes: nothing after the last one, no reset.
      const again = await open(channel, { 'last-event-id': messages(logged).at(-1)!.id! });
      await new Promise((r) => setTimeout(r, 300));
      again.close();
      assert.deepEqual(
        again.events.map((e) => e.event),
        [],
        'no warren-reset and nothing repeated',
      );
    });

    it('refuses a bad ?history= on a logged channel, and ignores it elsewhere', async () => {
      const bad = readSse(gw.url, `/logged/${unique('bad-')}?history=lots`);
      assert.equal(await bad.status, 400);
      const elsewhere = readSse(gw.url, `/${unique('plain-')}?history=lots`);
      assert.equal(await elsewhere.status, 200);
      elsewhere.close();
    });

    it('an id older than what the log retains gets warren-gap, then everything retained', async () => {
      const small = unique('warren-test-');
      const gw2 = await startGateway(kind, { logRoutes: '/logged/', exchange: small, logShards: SHARDS, logMaxBytes: 64 * 1024 });
      try {
        await gapThenRetained(gw2);
      } finally {
        await closeAndClean(gw2, small, kind, SHARDS);
      }
    });

    async function gapThenRetained(gw2: TestGateway): Promise<void> {
      const channel = `/logged/${unique('gone-')}`;
      const first = await open(channel, {}, gw2);
      await publishAll(gw2, channel, ['first']);
      await until(() => first.events.length === 1, 'the first message');
      first.close();
      // 64 KiB retained per shard: 200 messages of 1 KiB push the first one out.
      await publishAll(gw2, channel, range(0, 200, 'x'.repeat(1024)));
      const again = await open(channel, { 'last-event-id': first.events[0]!.id! }, gw2);
      await until(() => messages(again).at(-1)?.data.endsWith('199') === true, 'the retained messages', 30_000).catch((err: unknown) => {
        throw new Error(`${String(err)}: got ${again.events.length}: ${again.raw().slice(0, 300)} … ${again.raw().slice(-200)}`);
      });
      again.close();
      assert.equal(again.events[0]!.event, 'warren-gap');
      assert.deepEqual(JSON.parse(again.events[0]!.data), { reason: 'history-gone' });
      const got = messages(again).map((e) => Number(e.data.slice(1024)));
      assert.ok(got.length < 200 && got.length > 0, `some history is gone (${got.length} retained)`);
      assert.deepEqual(got, range(got[0]!, 200, '').map(Number), 'in order from the first retained, none missing after it');
    }
  });
}

describe('logged channels across a gateway restart on RabbitMQ', () => {
  it('an AMQP publisher logs without knowing; a client resumes on a new gateway process with nothing lost', async () => {
    const exchange = unique('warren-test-');
    const options = { logRoutes: '/logged/', exchange, logShards: SHARDS };
    const channel = `/logged/${unique('restart-')}`;
    let gw = await startGateway('rabbitmq', options);
    const conn = await amqp.connect(AMQP_URL);
    try {
      const first = readSse(gw.url, channel);
      assert.equal(await first.status, 200);
      await until(() => gw.gateway.stats().logs.subscribed > 0, 'the stream to subscribe');
      await publishAll(gw, channel, range(0, 10));
      await until(() => first.events.length === 10, 'the first 10');
      first.close();
      await gw.close();
      // No gateway runs: a plain AMQP publisher to the exchange, by the wire layout.
      const ch = await conn.createConfirmChannel();
      for (const text of range(10, 110)) ch.publish(exchange, channel, Buffer.from(text), { contentType: 'text/plain', messageId: text });
      await ch.waitForConfirms();
      gw = await startGateway('rabbitmq', options);
      const again = readSse(gw.url, channel, { 'last-event-id': first.events.at(-1)!.id! });
      await until(() => again.events.length >= 100, 'the 100 published while no gateway ran', 20_000);
      await new Promise((r) => setTimeout(r, 200));
      again.close();
      assert.deepEqual(
        again.events.map((e) => e.data),
        range(10, 110),
      );
    } finally {
      await conn.close();
      await closeAndClean(gw, exchange, 'rabbitmq', SHARDS);
    }
  });
});
