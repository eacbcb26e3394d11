import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { httpPublish, readSse, unique, until } from '../support/index.js';
import { startProxiedGateway, type ProxiedGateway } from './support.js';

// Issue 11, fault 7: an anonymous (live-only) stream stayed open across a
// broker restart and silently missed what was published meanwhile. A stream
// that cannot be complete must say so: it is ended, with a reconnect hint.
describe('an anonymous stream when the gateway loses the broker', { timeout: 60_000 }, () => {
  let gw: ProxiedGateway;
  before(async () => {
    gw = await startProxiedGateway({ sseRetryMs: 1000 });
  });
  after(() => gw?.close());

  it('is ended with a jittered retry hint instead of staying open with a gap', async () => {
    const channel = `/${unique('anon-outage-')}`;
    const reader = readSse(gw.url, channel);
    try {
      assert.equal(await reader.status, 200);
      assert.equal((await httpPublish(gw.url, channel, 'before')).status, 200);
      await until(() => reader.events.length === 1, 'the message before the outage');
      gw.proxy.cut();
      const ended = await Promise.race([reader.closed.then(() => true), new Promise((r) => setTimeout(() => r(false), 5000))]);
      assert.equal(ended, true, 'the stream stayed open across the broker loss');
      const m = /retry: (\d+)\n: closing \(broker-unavailable\)/.exec(reader.raw());
      assert.ok(m !== null, `no closing hint in ${JSON.stringify(reader.raw().slice(-200))}`);
      const retry = Number(m[1]);
      assert.ok(retry >= 1000 && retry <= 2000, `retry ${retry}`);
    } finally {
      reader.close();
    }
    // A new stream works once the broker is back.
    await until(() => gw.gateway.broker.ready, 'the gateway to reconnect', 10_000);
    const again = readSse(gw.url, channel);
    try {
      assert.equal(await again.status, 200);
      assert.equal((await httpPublish(gw.url, channel, 'after')).status, 200);
      await until(() => again.events.some((e) => e.data === 'after'), 'the message after the outage');
    } finally {
      again.close();
    }
  });
});
