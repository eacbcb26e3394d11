// Declaration caching of consumer queues (packages/gateway/src/consumer-queues.ts),
// on the in-process broker with a fake clock.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { ConsumerQueueLimits } from '@warren/protocol';
import { MemoryBroker } from '#gateway/broker/memory.js';
import { ConsumerQueues } from '#gateway/consumer-queues.js';

// A long x-expires, so the in-process broker (which expires queues on real
// timers) never drops a queue while the fake clock races ahead.
const LIMITS: ConsumerQueueLimits = { expiresMs: 60_000, maxLength: 100 };
// The cache trusts a declaration for x-expires less a margin of 20 % (12 s here).
const TRUSTED_MS = 48_000;

/** A MemoryBroker whose declarations can be made to fail or to wait. */
class TestBroker extends MemoryBroker {
  failNext: Error | undefined;
  hold: Promise<void> | undefined;
  override async declareConsumerQueue(name: string, channel: string, limits: ConsumerQueueLimits): Promise<void> {
    const failure = this.failNext;
    this.failNext = undefined;
    const hold = this.hold;
    await super.declareConsumerQueue(name, channel, limits);
    if (hold !== undefined) await hold;
    if (failure !== undefined) throw failure;
  }
}

describe('ConsumerQueues', () => {
  let broker: TestBroker;
  let queues: ConsumerQueues;
  let now: number;
  const declares = () => broker.stats().queueDeclares;

  beforeEach(async () => {
    broker = new TestBroker();
    await broker.start();
    now = 1_000_000;
    queues = new ConsumerQueues(broker, LIMITS, () => now);
  });
  afterEach(async () => {
    queues.close();
    await broker.close();
  });

  it('declares and binds a queue once and returns its name', async () => {
    assert.equal(queues.known('c1', '/ch'), false);
    assert.equal(await queues.ensure('c1', '/ch'), 'warren:c1:/ch');
    assert.equal(declares(), 1);
    assert.equal(broker.queueCount(), 1);
    assert.equal(queues.known('c1', '/ch'), true);
    assert.equal(await queues.ensure('c1', '/ch'), 'warren:c1:/ch');
    assert.equal(declares(), 1);
    // Another channel of the same consumer is another queue.
    await queues.ensure('c1', '/other');
    assert.equal(declares(), 2);
    assert.equal(queues.size, 2);
  });

  it('the declared queue is bound: a message published to the channel is in it', async () => {
    const name = await queues.ensure('c1', '/bound');
    await broker.publish('/bound', { id: 'm1', contentType: 'text/plain', body: Buffer.from('hi') });
    const delivery = await broker.get(name);
    assert.equal(delivery?.message.id, 'm1');
  });

  it('with no consumer, trusts a declaration for the retention window less the margin, then declares again', async () => {
    await queues.ensure('c1', '/ch');
    now += TRUSTED_MS - 1;
    await queues.ensure('c1', '/ch');
    assert.equal(queues.known('c1', '/ch'), true);
    assert.equal(declares(), 1);
    now += 1;
    assert.equal(queues.known('c1', '/ch'), false);
    await queues.ensure('c1', '/ch');
    assert.equal(declares(), 2);
    // The new declaration starts a new window.
    now += TRUSTED_MS - 1;
    await queues.ensure('c1', '/ch');
    assert.equal(declares(), 2);
  });

  it('trusts a declaration for as long as a consumer is active, and for the window after it stops', async () => {
    const name = await queues.ensure('c1', '/ch');
    queues.acquire(name);
    queues.acquire(name);
    now += 10 * LIMITS.expiresMs;
    await queues.ensure('c1', '/ch');
    assert.equal(declares(), 1);
    queues.release(name);
    now += 10 * LIMITS.expiresMs;
    await queues.ensure('c1', '/ch');
    assert.equal(declares(), 1, 'one of two consumers is still active');
    queues.release(name);
    // The window counts from the last release, not from the declaration.
    now += TRUSTED_MS - 1;
    await queues.ensure('c1', '/ch');
    assert.equal(declares(), 1);
    now += 1;
    await queues.ensure('c1', '/ch');
    assert.equal(declares(), 2);
  });

  it('a release more than acquired does not leave a negative count behind', async () => {
    const name = await queues.ensure('c1', '/ch');
    queues.release(name);
    queues.release(name);
    queues.acquire(name);
    now += 10 * LIMITS.expiresMs;
    await queues.ensure('c1', '/ch');
    assert.equal(declares(), 1, 'the one acquire after the extra releases counts as an active consumer');
  });

  it('acquire and release of a queue it never declared change nothing', async () => {
    queues.acquire('warren:c9:/ch');
    queues.release('warren:c9:/ch');
    assert.equal(queues.size, 0);
    assert.equal(queues.known('c9', '/ch'), false);
  });

  it('declares again after invalidate(), even with an active consumer', async () => {
    const name = await queues.ensure('c1', '/ch');
    queues.acquire(name);
    queues.invalidate(name);
    assert.equal(queues.known('c1', '/ch'), false);
    await queues.ensure('c1', '/ch');
    assert.equal(declares(), 2);
  });

  it('declares every queue again after the broker connection is lost, but still counts it as seen (no queue budget)', async () => {
    await queues.ensure('c1', '/a');
    await queues.ensure('c2', '/b');
    queues.acquire('warren:c2:/b');
    broker.emit('lost', undefined);
    assert.equal(queues.known('c1', '/a'), false);
    assert.equal(queues.known('c2', '/b'), false, 'its consumer went with the connection');
    assert.equal(queues.seen('c1', '/a'), true);
    assert.equal(queues.seen('c2', '/b'), true);
    await queues.ensure('c1', '/a');
    assert.equal(declares(), 3);
    assert.equal(queues.known('c1', '/a'), true);
    // A consumer that stops before its queue was declared again leaves it untrusted.
    queues.release('warren:c2:/b');
    assert.equal(queues.known('c2', '/b'), false);
    await queues.ensure('c2', '/b');
    assert.equal(declares(), 4);
    // Seen until x-expires after its last use, then forgotten.
    now += LIMITS.expiresMs;
    assert.equal(queues.seen('c1', '/a'), false);
  });

  it('concurrent ensure() calls for one queue share one declaration', async () => {
    let release!: () => void;
    broker.hold = new Promise<void>((r) => (release = r));
    const pending = Array.from({ length: 5 }, () => queues.ensure('c1', '/ch'));
    const other = queues.ensure('c2', '/ch');
    await new Promise<void>((r) => setImmediate(r));
    assert.equal(queues.known('c1', '/ch'), false, 'not known before the declaration completes');
    release();
    assert.deepEqual(await Promise.all(pending), Array(5).fill('warren:c1:/ch'));
    await other;
    assert.equal(declares(), 2, 'one for c1 (five callers), one for c2');
  });

  it('a failed declaration fails every caller waiting for it, is not cached, and the next ensure() tries again', async () => {
    let release!: () => void;
    broker.hold = new Promise<void>((r) => (release = r));
    broker.failNext = new Error('declare failed');
    const a = queues.ensure('c1', '/ch');
    const b = queues.ensure('c1', '/ch');
    release();
    await assert.rejects(a, /declare failed/);
    await assert.rejects(b, /declare failed/);
    assert.equal(queues.known('c1', '/ch'), false);
    broker.hold = undefined;
    assert.equal(await queues.ensure('c1', '/ch'), 'warren:c1:/ch');
    assert.equal(declares(), 2);
    assert.equal(queues.known('c1', '/ch'), true);
  });
});
