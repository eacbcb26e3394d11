// Per-address and per-identity caps, and the per-address queue budget
// (packages/gateway/src/limits.ts); the budget runs on a fake clock.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WarrenError } from '@warren/protocol';
import { ConnectionLimits, QueueBudget } from '#gateway/limits.js';

const refused = (code: string, pattern: RegExp) => (err: unknown) =>
  err instanceof WarrenError && err.code === code && err.status === 429 && pattern.test(err.message);

describe('ConnectionLimits', () => {
  it('caps open subscriptions per client address', () => {
    const limits = new ConnectionLimits(2, 100);
    limits.acquire('10.0.0.1', undefined);
    limits.acquire('10.0.0.1', undefined);
    assert.throws(
      () => limits.acquire('10.0.0.1', undefined),
      refused('TOO_MANY_CONNECTIONS', /at most 2 open subscriptions per client address/),
    );
    // Another address has its own count.
    limits.acquire('10.0.0.2', undefined);
  });

  it('caps open subscriptions per identity across addresses', () => {
    const limits = new ConnectionLimits(100, 2);
    limits.acquire('10.0.0.1', 'alice');
    limits.acquire('10.0.0.2', 'alice');
    assert.throws(() => limits.acquire('10.0.0.3', 'alice'), refused('TOO_MANY_CONNECTIONS', /at most 2 open subscriptions per identity/));
    limits.acquire('10.0.0.3', 'bob');
    // Without an identity only the address counts.
    limits.acquire('10.0.0.3', undefined);
  });

  it('a refusal counts nothing: neither the address nor the identity', () => {
    const limits = new ConnectionLimits(2, 1);
    limits.acquire('10.0.0.1', 'alice');
    assert.throws(() => limits.acquire('10.0.0.1', 'alice'), refused('TOO_MANY_CONNECTIONS', /per identity/));
    // Had the refused attempt counted the address, this would be the third.
    limits.acquire('10.0.0.1', 'bob');
  });

  it('gives a subscription back when released, once however often release is called', () => {
    const limits = new ConnectionLimits(2, 2);
    const first = limits.acquire('10.0.0.1', 'alice');
    limits.acquire('10.0.0.1', 'alice');
    first();
    first();
    // The second subscription is still open: one slot is free, not two.
    limits.acquire('10.0.0.1', 'alice');
    assert.throws(
      () => limits.acquire('10.0.0.1', undefined),
      refused('TOO_MANY_CONNECTIONS', /per client address/),
      'a double release freed the address slot twice',
    );
    assert.throws(
      () => limits.acquire('10.0.0.2', 'alice'),
      refused('TOO_MANY_CONNECTIONS', /per identity/),
      'a double release freed the identity slot twice',
    );
  });

  it('take() and give() count the same way as acquire()', () => {
    const limits = new ConnectionLimits(1, 5);
    limits.take('10.0.0.1', 'alice');
    assert.throws(() => limits.take('10.0.0.1', 'bob'), refused('TOO_MANY_CONNECTIONS', /per client address/));
    limits.give('10.0.0.1', 'alice');
    limits.take('10.0.0.1', 'bob');
  });
});

describe('QueueBudget', () => {
  function budget(perMinute: number) {
    const clock = { now: 5_000_000 };
    const b = new QueueBudget(perMinute, () => clock.now);
    return { b, clock };
  }

  it('allows perMinute new queues per address at once, then refuses with 429 QUEUE_BUDGET_EXCEEDED', () => {
    const { b } = budget(3);
    try {
      for (let i = 0; i < 3; i++) b.take('10.0.0.1');
      assert.throws(() => b.take('10.0.0.1'), refused('QUEUE_BUDGET_EXCEEDED', /at most 3 new queues per client address per minute/));
      // Each address has its own bucket.
      b.take('10.0.0.2');
    } finally {
      b.close();
    }
  });

  it('refills continuously: one token every minute / perMinute', () => {
    const { b, clock } = budget(3);
    try {
      for (let i = 0; i < 3; i++) b.take('a');
      clock.now += 19_999;
      assert.throws(() => b.take('a'), refused('QUEUE_BUDGET_EXCEEDED', /per minute/));
      clock.now += 1;
      b.take('a');
      assert.throws(() => b.take('a'), refused('QUEUE_BUDGET_EXCEEDED', /per minute/));
    } finally {
      b.close();
    }
  });

  it('a refused take costs nothing and keeps the refill made so far', () => {
    const { b, clock } = budget(3);
    try {
      for (let i = 0; i < 3; i++) b.take('a');
      clock.now += 10_000; // half a token
      assert.throws(() => b.take('a'));
      assert.throws(() => b.take('a'));
      clock.now += 10_000; // the other half
      b.take('a');
    } finally {
      b.close();
    }
  });

  it('never holds more than perMinute tokens, however long the address was idle', () => {
    const { b, clock } = budget(3);
    try {
      b.take('a');
      clock.now += 24 * 3_600_000;
      for (let i = 0; i < 3; i++) b.take('a');
      assert.throws(() => b.take('a'), refused('QUEUE_BUDGET_EXCEEDED', /per minute/));
    } finally {
      b.close();
    }
  });
});
