// within() (packages/gateway/src/deadline.ts): the deadline of broker
// operations and polls, driven by node:test's mock timers.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { within } from '#gateway/deadline.js';

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: Error) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Runs the continuations of settled promises (mock timers do not mock setImmediate). */
const flush = () => new Promise<void>((r) => setImmediate(r));

describe('within', () => {
  it("resolves with the work's value when it is in time, and never calls timeout()", async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const work = deferred<string>();
    let timeouts = 0;
    const result = within(work.promise, 1000, () => {
      timeouts++;
      return new Error('late');
    });
    t.mock.timers.tick(999);
    work.resolve('done');
    assert.equal(await result, 'done');
    t.mock.timers.tick(10_000);
    assert.equal(timeouts, 0);
  });

  it("passes on the work's failure when it is in time", async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const work = deferred<string>();
    const result = within(work.promise, 1000, () => new Error('late'));
    work.reject(new Error('broken'));
    await assert.rejects(result, /broken/);
  });

  it('rejects with timeout() once ms have passed, and hands a late value to late()', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const work = deferred<string>();
    const late: string[] = [];
    const result = within(
      work.promise,
      1000,
      () => new Error('too slow'),
      (v) => late.push(v),
    );
    const seen: { outcome?: unknown } = {};
    result.then(
      (v) => (seen.outcome = v),
      (e: Error) => (seen.outcome = e),
    );
    t.mock.timers.tick(999);
    await flush();
    assert.equal(seen.outcome, undefined, 'still waiting 1 ms before the deadline');
    t.mock.timers.tick(1);
    await flush();
    const err = seen.outcome as Error | undefined;
    assert.ok(err instanceof Error);
    assert.equal(err.message, 'too slow');
    work.resolve('message to give back');
    await flush();
    assert.deepEqual(late, ['message to give back']);
  });

  it('ignores a late failure (no unhandled rejection) and a late value without late()', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const failing = deferred<string>();
    const a = within(failing.promise, 10, () => new Error('timeout a'));
    const succeeding = deferred<string>();
    const b = within(succeeding.promise, 10, () => new Error('timeout b'));
    t.mock.timers.tick(10);
    await assert.rejects(a, /timeout a/);
    await assert.rejects(b, /timeout b/);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      failing.reject(new Error('late failure'));
      succeeding.resolve('late value');
      await flush();
      await flush();
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('a deadline of zero or less times out at once', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const never = new Promise<string>(() => undefined);
    const result = within(never, -5, () => new Error('no time'));
    t.mock.timers.tick(0);
    await assert.rejects(result, /no time/);
  });
});
