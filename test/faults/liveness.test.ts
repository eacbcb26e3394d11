import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { WarrenError } from '@warren/protocol';
import { Producer } from '@warren/producer';
import { poll, unique, until } from '../support/index.js';
import { startProxiedGateway, type ProxiedGateway } from './support.js';

// Issue 11, faults 4 and 5: a broker that stops answering (SIGSTOP, a
// partition: here a black-holed TCP path) went unnoticed for ~163 s, health
// said "ok", polls outlived their timeout and the producer's publish hung.
describe('a broker that stops answering', { timeout: 120_000 }, () => {
  let gw: ProxiedGateway;
  before(async () => {
    // The defaults: a 4 s AMQP heartbeat, 10 s per broker operation.
    gw = await startProxiedGateway();
  });
  after(() => gw?.close());

  it('answers polls by their timeout plus the stated grace, fails a publish with BROKER_TIMEOUT, and turns health 503 within 3 heartbeats (12 s)', async () => {
    const channel = `/${unique('stall-')}`;
    const consumer = unique('c');
    // The consumer's queue exists before the stall.
    assert.equal((await poll(gw.url, channel, { consumerId: consumer, timeout: 0 })).status, 204);
    const producer = new Producer({ url: gw.proxiedAmqpUrl, timeoutMs: 2000 });
    try {
      await producer.publish('warm-up').to(`/${unique('other-')}`);
      const started = Date.now();
      gw.proxy.blackhole(true);

      // A 2 s poll is answered by 2 s + 2 s grace (POLL_GRACE_MS), whatever the broker does.
      const pollStart = Date.now();
      const answered = await Promise.race([poll(gw.url, channel, { consumerId: consumer, timeout: 2 }), sleep(8000).then(() => undefined)]);
      const pollMs = Date.now() - pollStart;
      assert.ok(answered !== undefined, 'the 2 s poll was not answered within 8 s');
      assert.ok(pollMs <= 4500, `the 2 s poll took ${pollMs} ms`);
      assert.ok([204, 503].includes(answered.status), `poll status ${answered.status}`);

      // The producer's publish does not hang: it fails with a code within its timeout.
      const publishStart = Date.now();
      const outcome = await Promise.race([
        producer
          .publish('into the void')
          .to(channel)
          .then(
            () => 'confirmed',
            (err: unknown) => (err instanceof WarrenError ? err.code : String(err)),
          ),
        sleep(8000).then(() => 'hung'),
      ]);
      assert.equal(outcome, 'BROKER_TIMEOUT', `publish: ${outcome} after ${Date.now() - publishStart} ms`);

      // Readiness turns 503 once the heartbeat finds the connection dead.
      await until(async () => (await fetch(`${gw.url}/_warren/health`)).status === 503, 'health to turn 503', 20_000, 200);
      const detectedMs = Date.now() - started;
      assert.ok(detectedMs <= 12_500, `the dead connection was noticed after ${detectedMs} ms`);
    } finally {
      gw.proxy.blackhole(false);
      gw.proxy.cut();
      await producer.close();
    }
    // And it comes back.
    await until(async () => (await fetch(`${gw.url}/_warren/health`)).status === 200, 'health to turn 200 again', 20_000, 200);
  });
});
