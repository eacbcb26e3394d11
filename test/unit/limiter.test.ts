// The Limiter of identified-stream starts (packages/gateway/src/streams/limiter.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Limiter } from '#gateway/sources/limiter.js';

/** A task the test finishes by hand, recording when it started. */
function gate<T>(started: string[], name: string): { task: () => Promise<T>; resolve: (v: T) => void; reject: (e: Error) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const done = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return {
    task: () => {
      started.push(name);
      return done;
    },
    resolve,
    reject,
  };
}

/** Lets settled promises run their continuations. */
const settle = () => new Promise<void>((r) => setImmediate(r));

describe('Limiter', () => {
  it('runs at most max tasks at once and starts the waiting ones in order', async () => {
    const limiter = new Limiter(2);
    const started: string[] = [];
    const gates = ['a', 'b', 'c', 'd', 'e'].map((n) => gate<string>(started, n));
    const runs = gates.map((g) => limiter.run(g.task));
    await settle();
    assert.deepEqual(started, ['a', 'b']);
    assert.equal(limiter.queued, 3);

    gates[1]!.resolve('b');
    await settle();
    assert.deepEqual(started, ['a', 'b', 'c']);
    assert.equal(limiter.queued, 2);

    gates[0]!.resolve('a');
    await settle();
    assert.deepEqual(started, ['a', 'b', 'c', 'd']);
    assert.equal(limiter.queued, 1);

    for (const g of gates.slice(2)) g.resolve('x');
    assert.deepEqual(await Promise.all(runs), ['a', 'b', 'x', 'x', 'x']);
    assert.deepEqual(started, ['a', 'b', 'c', 'd', 'e']);
    assert.equal(limiter.queued, 0);
  });

  it("gives a failed task's slot to the next one and passes the failure to its caller", async () => {
    const limiter = new Limiter(1);
    const started: string[] = [];
    const first = gate<void>(started, 'first');
    const second = gate<void>(started, 'second');
    const a = limiter.run(first.task);
    const b = limiter.run(second.task);
    await settle();
    assert.deepEqual(started, ['first']);
    first.reject(new Error('boom'));
    await assert.rejects(a, /boom/);
    await settle();
    assert.deepEqual(started, ['first', 'second']);
    second.resolve();
    await b;
  });

  it('frees its slot after a task that throws synchronously', async () => {
    const limiter = new Limiter(1);
    await assert.rejects(
      limiter.run(() => {
        throw new Error('sync');
      }),
      /sync/,
    );
    const started: string[] = [];
    const next = gate<number>(started, 'next');
    const run = limiter.run(next.task);
    await settle();
    assert.deepEqual(started, ['next']);
    next.resolve(7);
    assert.equal(await run, 7);
  });

  it('is back to max free slots once everything finished (a handed-over slot is not counted twice)', async () => {
    const limiter = new Limiter(2);
    const started: string[] = [];
    const first = ['1', '2', '3', '4'].map((n) => gate<void>(started, n));
    const runs = first.map((g) => limiter.run(g.task));
    for (const g of first) g.resolve();
    await Promise.all(runs);

    const second = ['5', '6', '7'].map((n) => gate<void>(started, n));
    const more = second.map((g) => limiter.run(g.task));
    await settle();
    assert.deepEqual(started.slice(4), ['5', '6'], 'two start at once again, not one and not three');
    assert.equal(limiter.queued, 1);
    for (const g of second) g.resolve();
    await Promise.all(more);
  });
});
