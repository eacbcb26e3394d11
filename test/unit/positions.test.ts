// The pieces of logged channels that need no network: the positions map on
// the embedded broker (batched records, shared marks, expiry), and a tail's
// recent entries (packages/gateway/src/logs/{positions,recent-entries}.ts).
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { WarrenMessage } from '@warren/protocol';
import { MemoryBroker } from '#gateway/broker/memory.js';
import { silentLogger } from '#gateway/logger.js';
import { eventId } from '#gateway/logs/event-id.js';
import { Positions } from '#gateway/logs/positions.js';
import { RecentEntries } from '#gateway/logs/recent-entries.js';

const LOG = 'warren:positions:test';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The embedded broker, counting what is appended to logs. */
class CountingBroker extends MemoryBroker {
  appended = 0;
  override appendLog(log: string, message: WarrenMessage): Promise<void> {
    this.appended++;
    return super.appendLog(log, message);
  }
}

describe('Positions', () => {
  let broker: CountingBroker;
  let positions: Positions;

  beforeEach(async () => {
    broker = new CountingBroker();
    await broker.start();
    positions = new Positions(broker, silentLogger, {
      log: LOG,
      limits: { maxAgeMs: 60_000, maxBytes: 1024 * 1024, segmentBytes: 64 * 1024 },
      expiresMs: 200,
    });
  });
  afterEach(async () => {
    await positions.close();
    await broker.close();
  });

  it('reads positions appended one by one and many per entry', async () => {
    await positions.save('c1', '/a', '1.00000001');
    await positions.saveAll([
      ['c2', '/a', '2.00000002'],
      ['c3', '/b', '3.00000003'],
    ]);
    await positions.sync();
    assert.equal(positions.get('c1', '/a'), '1.00000001');
    assert.equal(positions.get('c2', '/a'), '2.00000002');
    assert.equal(positions.get('c3', '/b'), '3.00000003');
    assert.equal(positions.get('c3', '/a'), undefined);
  });

  it('shares one mark among the syncs that come while one is being appended', async () => {
    await positions.sync();
    const before = broker.appended;
    await Promise.all(Array.from({ length: 50 }, () => positions.sync()));
    const marks = broker.appended - before;
    assert.ok(marks >= 1 && marks <= 2, `50 syncs at once appended ${marks} marks`);
  });

  it('forgets expired positions at the next sync', async () => {
    await positions.saveAll([
      ['c1', '/a', '1.00000001'],
      ['c2', '/a', '2.00000002'],
    ]);
    await positions.sync();
    assert.equal(positions.size, 2);
    await sleep(250);
    await positions.save('c3', '/a', '3.00000003');
    await positions.sync();
    assert.equal(positions.get('c1', '/a'), undefined);
    await positions.sync();
    assert.equal(positions.size, 1, 'only the fresh one is kept');
    assert.equal(positions.get('c3', '/a'), '3.00000003');
  });
});

describe('RecentEntries', () => {
  const message = (body: string): WarrenMessage => ({ id: 'producer-id', contentType: 'text/plain', body: Buffer.from(body) });
  const fill = (recent: RecentEntries, from: number, to: number, at = Date.now()): void => {
    for (let offset = from; offset < to; offset++) {
      recent.push({ offset, channel: offset % 2 === 0 ? '/even' : '/odd', message: message(`m${offset}`), named: false, at });
    }
  };
  const idOf = (offset: number): string => eventId(offset, message(`m${offset}`));
  const bodies = (entries: ReadonlyArray<readonly [number, WarrenMessage]> | undefined): string[] | undefined =>
    entries?.map(([, m]) => m.body.toString());

  it('gives the entries of a channel after an id it holds, each named by its event id', () => {
    const recent = new RecentEntries(100, 1024 * 1024, 60_000);
    fill(recent, 10, 30);
    const after = recent.after(idOf(20), 20, '/even', Infinity);
    assert.deepEqual(bodies(after), ['m22', 'm24', 'm26', 'm28']);
    assert.deepEqual(
      after!.map(([, m]) => m.id),
      [22, 24, 26, 28].map(idOf),
    );
    assert.equal(
      recent.after(
        idOf(20).replace(/.$/, (c) => (c === '0' ? '1' : '0')),
        20,
        '/even',
        Infinity,
      ),
      undefined,
      'another entry',
    );
    assert.equal(recent.after(idOf(5), 5, '/even', Infinity), undefined, 'older than held');
    assert.equal(recent.after(idOf(40), 40, '/even', Infinity), undefined, 'newer than read');
  });

  it('keeps at most its count, its bytes and its age, and refuses a catch-up over the byte budget', () => {
    const byCount = new RecentEntries(8, 1024 * 1024, 60_000);
    fill(byCount, 0, 20);
    assert.equal(byCount.after(idOf(11), 11, '/odd', Infinity), undefined, 'evicted by count');
    assert.deepEqual(bodies(byCount.after(idOf(12), 12, '/even', Infinity)), ['m14', 'm16', 'm18']);
    // Each entry counts its body and 256 bytes: 3 fit in 800.
    const byBytes = new RecentEntries(100, 800, 60_000);
    fill(byBytes, 0, 10);
    assert.equal(byBytes.after(idOf(6), 6, '/odd', Infinity), undefined, 'evicted by bytes');
    assert.deepEqual(bodies(byBytes.after(idOf(7), 7, '/odd', Infinity)), ['m9']);
    const byAge = new RecentEntries(100, 1024 * 1024, 1000);
    fill(byAge, 0, 5, Date.now() - 5000);
    fill(byAge, 5, 10);
    assert.equal(byAge.after(idOf(3), 3, '/odd', Infinity), undefined, 'expired');
    assert.deepEqual(bodies(byAge.after(idOf(5), 5, '/odd', Infinity)), ['m7', 'm9']);
    assert.equal(byAge.after(idOf(5), 5, '/odd', 3), undefined, 'more bytes than the budget');
  });
});
