import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  BROKERS,
  httpPublish,
  rabbitQueues,
  readSse,
  startGateway,
  unique,
  until,
  type SseReader,
  type TestGateway,
  stalledSse,
} from './support/index.js';

for (const kind of BROKERS) {
  describe(`anonymous streams on the ${kind} broker`, () => {
    let gw: TestGateway;
    before(async () => {
      gw = await startGateway(kind, { maxPendingBytes: 64 * 1024 });
    });
    after(() => gw.close());

    it('200 anonymous listeners on one channel cost one queue, one binding and one consumer; each gets every message', async () => {
      const channel = `/${unique('crowd-')}`;
      const before = gw.gateway.stats().broker;
      const readers: SseReader[] = [];
      for (let i = 0; i < 200; i++) readers.push(readSse(gw.url, channel));
      for (const reader of readers) assert.equal(await reader.status, 200);
      for (let i = 0; i < 5; i++) await httpPublish(gw.url, channel, `m${i}`);
      await until(() => readers.every((r) => r.events.length === 5), 'every listener to get 5 messages');
      for (const reader of readers)
        assert.deepEqual(
          reader.events.map((e) => e.data),
          ['m0', 'm1', 'm2', 'm3', 'm4'],
        );
      const after = gw.gateway.stats().broker;
      assert.equal(after.queueDeclares - before.queueDeclares, 1);
      assert.equal(after.queueBinds - before.queueBinds, 1);
      assert.equal(after.consumersStarted - before.consumersStarted, 1);
      if (kind === 'rabbitmq') assert.equal((await rabbitQueues('warren:fanout:')).filter((q) => q.endsWith(`:${channel}`)).length, 1);
      for (const reader of readers) reader.close();
      await until(() => gw.gateway.stats().fanOut.subscribers === 0, 'the listeners to leave');
    });

    it('closes an anonymous listener that stops reading, and the others keep getting everything', async () => {
      const channel = `/${unique('slowanon-')}`;
      const slow = stalledSse(gw.url, channel);
      const fine = readSse(gw.url, channel);
      await until(() => gw.gateway.stats().fanOut.subscribers >= 2, 'both listeners');
      await fine.status;
      // 2,000 × 16 KiB: more than loopback's socket buffers can hide.
      const body = 'y'.repeat(16 * 1024);
      for (let i = 0; i < 2000; i += 100) {
        await Promise.all(
          Array.from({ length: 100 }, (_, j) => httpPublish(gw.url, channel, `${i + j} ${body}`, { 'message-id': `s-${i + j}` })),
        );
      }
      try {
        // (A paused client cannot see the close until it reads: ask the gateway.)
        await until(
          () => gw.gateway.stats().fanOut.slowClosed >= 1 && gw.gateway.stats().streams.sse === 1,
          'the stalled listener to be closed',
          10_000,
        );
        await until(() => fine.events.length === 2000, 'the reading listener to get all 2000', 20_000);
        assert.deepEqual(
          fine.events.map((e) => e.id),
          Array.from({ length: 2000 }, (_, i) => `s-${i}`),
        );
      } finally {
        slow.destroy();
        fine.close();
      }
    });
  });
}
