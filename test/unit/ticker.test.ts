// The shared heartbeat timer (packages/gateway/src/transports/ticker.ts),
// driven by node:test's mock timers: no real waiting.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Ticker } from '#gateway/transports/ticker.js';

describe('Ticker', () => {
  it('calls tick for every member once per interval', (t) => {
    t.mock.timers.enable({ apis: ['setInterval'] });
    const ticks: string[] = [];
    const ticker = new Ticker<string>(1000, (m) => ticks.push(m));
    ticker.add('a');
    ticker.add('b');
    t.mock.timers.tick(999);
    assert.deepEqual(ticks, []);
    t.mock.timers.tick(1);
    assert.deepEqual(ticks, ['a', 'b'], 'one timer for both: each member once, not once per add');
    t.mock.timers.tick(2000);
    assert.deepEqual(ticks, ['a', 'b', 'a', 'b', 'a', 'b']);
    ticker.delete('a');
    ticker.delete('b');
  });

  it('stops ticking a deleted member and keeps ticking the rest', (t) => {
    t.mock.timers.enable({ apis: ['setInterval'] });
    const ticks: string[] = [];
    const ticker = new Ticker<string>(100, (m) => ticks.push(m));
    ticker.add('a');
    ticker.add('b');
    ticker.delete('a');
    t.mock.timers.tick(100);
    assert.deepEqual(ticks, ['b']);
    ticker.delete('b');
  });

  it('stops its timer when the last member leaves and starts a fresh one on the next add', (t) => {
    t.mock.timers.enable({ apis: ['setInterval'] });
    const ticks: string[] = [];
    const ticker = new Ticker<string>(100, (m) => ticks.push(m));
    ticker.add('a');
    t.mock.timers.tick(50);
    ticker.delete('a');
    t.mock.timers.tick(1000);
    assert.deepEqual(ticks, []);
    // A fresh interval: the first tick is a full interval after this add.
    t.mock.timers.tick(30);
    ticker.add('b');
    t.mock.timers.tick(99);
    assert.deepEqual(ticks, []);
    t.mock.timers.tick(1);
    assert.deepEqual(ticks, ['b']);
    ticker.delete('b');
  });

  it('adding a member twice ticks it once; deleting an unknown member changes nothing', (t) => {
    t.mock.timers.enable({ apis: ['setInterval'] });
    const ticks: string[] = [];
    const ticker = new Ticker<string>(100, (m) => ticks.push(m));
    ticker.add('a');
    ticker.add('a');
    ticker.delete('nobody');
    t.mock.timers.tick(100);
    assert.deepEqual(ticks, ['a']);
    ticker.delete('a');
  });
});
