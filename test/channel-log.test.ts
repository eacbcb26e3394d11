// The broker seam of channel logs (docs/channel-logs.md): a stream per log
// shard, bound to logged channels, read from any position with offsets.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { channelLogName, type LogLimits } from '@warren/protocol';
import { QueueNotFoundError, type Broker, type LogEntry, type LogPosition, type Subscription } from '@warren/gateway';
import { BROKERS, startGateway, unique, until, type TestGateway } from './support/index.js';

const LIMITS: LogLimits = { maxAgeMs: 3_600_000, maxBytes: 10_000_000, segmentBytes: 1_000_000 };

interface Reader {
  entries: LogEntry[];
  ended: string | undefined;
  subscription: Subscription;
}

async function read(broker: Broker, log: string, from: LogPosition, prefetch = 50, ack = true): Promise<Reader> {
  const reader: Reader = { entries: [], ended: undefined, subscription: undefined! };
  reader.subscription = await broker.readLog(log, {
    from,
    prefetch,
    onEntry: (entry) => {
      reader.entries.push(entry);
      if (ack) entry.ack();
    },
    onEnd: (end) => (reader.ended = end.reason),
  });
  return reader;
}

const bodies = (entries: LogEntry[]): string[] => entries.map((e) => e.message.body.toString());

for (const kind of BROKERS) {
  describe(`channel logs on the ${kind} broker`, () => {
    let gw: TestGateway;
    let broker: Broker;
    const logs: string[] = [];
    const newLog = async (limits = LIMITS): Promise<string> => {
      const log = channelLogName(0).replace(/0$/, unique('test-'));
      logs.push(log);
      await broker.declareLog(log, limits);
      return log;
    };
    const publish = async (channel: string, ...texts: string[]): Promise<void> => {
      for (const text of texts) await broker.publish(channel, { id: unique('m'), contentType: 'text/plain', body: Buffer.from(text) });
    };
    before(async () => {
      gw = await startGateway(kind);
      broker = gw.gateway.broker;
    });
    after(async () => {
      for (const log of logs) await broker.deleteLog(log);
      await gw.close();
    });

    it('keeps what is published to its bound channels, in order, with offsets from 0 and the channel of each', async () => {
      const log = await newLog();
      const [a, b, c] = [`/${unique('a-')}`, `/${unique('b-')}`, `/${unique('c-')}`];
      await broker.bindLog(log, a);
      await broker.bindLog(log, b);
      await broker.bindLog(log, b); // idempotent
      for (let i = 0; i < 5; i++) await publish(i % 2 === 0 ? a : b, `m${i}`);
      await publish(c, 'not logged');
      const reader = await read(broker, log, 'first');
      await until(() => reader.entries.length === 5, '5 entries');
      assert.deepEqual(bodies(reader.entries), ['m0', 'm1', 'm2', 'm3', 'm4']);
      assert.deepEqual(
        reader.entries.map((e) => e.offset),
        [0, 1, 2, 3, 4],
      );
      assert.deepEqual(
        reader.entries.map((e) => e.channel),
        [a, b, a, b, a],
      );
      await reader.subscription.cancel();
    });

    it('reads from an offset, and from next (only what comes after)', async () => {
      const log = await newLog();
      const channel = `/${unique('ch-')}`;
      await broker.bindLog(log, channel);
      await publish(channel, ...Array.from({ length: 10 }, (_, i) => `m${i}`));
      const fromFive = await read(broker, log, { offset: 5 });
      const next = await read(broker, log, 'next');
      await until(() => fromFive.entries.length === 5, 'entries 5..9');
      assert.deepEqual(bodies(fromFive.entries), ['m5', 'm6', 'm7', 'm8', 'm9']);
      assert.equal(fromFive.entries[0]!.offset, 5);
      await publish(channel, 'm10');
      await until(() => next.entries.length === 1 && fromFive.entries.length === 6, 'the new entry for both readers');
      assert.deepEqual(bodies(next.entries), ['m10']);
      assert.equal(next.entries[0]!.offset, 10);
      await Promise.all([fromFive.subscription.cancel(), next.subscription.cancel()]);
    });

    it('holds at most prefetch unacknowledged entries per reader', async () => {
      const log = await newLog();
      const channel = `/${unique('ch-')}`;
      await broker.bindLog(log, channel);
      await publish(channel, 'a', 'b', 'c', 'd', 'e');
      const reader = await read(broker, log, 'first', 2, false);
      await until(() => reader.entries.length === 2, 'two entries');
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(reader.entries.length, 2, 'no third entry before an ack');
      reader.entries[0]!.ack();
      reader.entries[0]!.ack(); // once only
      await until(() => reader.entries.length === 3, 'a third entry after one ack');
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(reader.entries.length, 3);
      await reader.subscription.cancel();
    });

    it('reads from a time: entries stored from then on', async () => {
      const log = await newLog();
      const channel = `/${unique('ch-')}`;
      await broker.bindLog(log, channel);
      await publish(channel, 'old1', 'old2');
      // RabbitMQ's timestamps are in seconds: start on a later second than the old entries.
      const at = (Math.floor(Date.now() / 1000) + 1) * 1000;
      await new Promise((r) => setTimeout(r, at - Date.now() + 50));
      await publish(channel, 'new1', 'new2');
      const reader = await read(broker, log, { time: at });
      await until(() => reader.entries.length === 2, 'the two new entries');
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(bodies(reader.entries), ['new1', 'new2']);
      await reader.subscription.cancel();
    });

    it('cuts the oldest entries past its size bound; a reader from an older offset starts at the first retained', async () => {
      const log = await newLog({ maxAgeMs: 3_600_000, maxBytes: 4000, segmentBytes: 1000 });
      const channel = `/${unique('ch-')}`;
      await broker.bindLog(log, channel);
      await publish(channel, ...Array.from({ length: 60 }, (_, i) => `${String(i).padStart(3, '0')}${'x'.repeat(200)}`));
      // RabbitMQ applies retention when it rolls to a new segment: one more publish after the others.
      await publish(channel, 'last');
      const reader = await read(broker, log, { offset: 0 }, 100);
      await until(() => reader.entries.at(-1)?.message.body.toString() === 'last', 'the last entry');
      const first = reader.entries[0]!.offset;
      assert.ok(first > 0, `the oldest entries are gone (first offset ${first})`);
      assert.ok(reader.entries.length < 61);
      // Increasing, not contiguous: RabbitMQ starts each segment with an entry of its own (an offset no reader sees).
      for (let i = 1; i < reader.entries.length; i++) assert.ok(reader.entries[i]!.offset > reader.entries[i - 1]!.offset);
      const texts = bodies(reader.entries).slice(0, -1);
      assert.deepEqual(
        texts.map((t) => Number(t.slice(0, 3))),
        texts.map((_, i) => Number(texts[0]!.slice(0, 3)) + i),
        'no message missing after the first retained',
      );
      await reader.subscription.cancel();
    });

    it('ends its readers when deleted; a log declared again starts from offset 0', async () => {
      const log = await newLog();
      const channel = `/${unique('ch-')}`;
      await broker.bindLog(log, channel);
      await publish(channel, 'a', 'b');
      const reader = await read(broker, log, 'first');
      await until(() => reader.entries.length === 2, 'two entries');
      await broker.deleteLog(log);
      await until(() => reader.ended === 'queue-deleted', 'the reader to end');
      await assert.rejects(read(broker, log, 'first'), (err: unknown) => err instanceof QueueNotFoundError);
      await assert.rejects(broker.bindLog(log, channel), (err: unknown) => err instanceof QueueNotFoundError);
      await broker.declareLog(log, LIMITS);
      await broker.bindLog(log, channel);
      await publish(channel, 'c');
      const again = await read(broker, log, 'first');
      await until(() => again.entries.length === 1, 'one entry');
      assert.equal(again.entries[0]!.offset, 0);
      assert.deepEqual(bodies(again.entries), ['c']);
      await again.subscription.cancel();
    });
  });
}
