import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { AMQP_URL, httpPublish, readSse, requireRabbit, spawnServe, TOKEN, unique, until, type SseReader } from '../support/index.js';
import { FaultProxy } from '../support/fault-proxy.js';

// Issue 11, fault 1: the broker connection dropping again right after a
// reconnect, while anonymous streams are open, must not take the process down
// (it did: an uncaught rejection from the fan-out's restart, exit code 1).
describe('a broker connection cut right after each reconnect', { timeout: 120_000 }, () => {
  let proxy: FaultProxy;
  let serve: Awaited<ReturnType<typeof spawnServe>>;
  before(async () => {
    await requireRabbit();
    const target = new URL(AMQP_URL);
    proxy = new FaultProxy({ targetHost: target.hostname, targetPort: Number(target.port || 5672) });
    const port = await proxy.listen();
    const proxied = new URL(AMQP_URL);
    proxied.port = String(port);
    serve = await spawnServe([
      '--amqp-url',
      proxied.toString(),
      '--publish-token',
      TOKEN,
      '--reconnect-min',
      '10ms',
      '--reconnect-max',
      '100ms',
    ]);
  });
  after(async () => {
    await serve?.stop();
    await proxy?.close();
  });

  it('leaves the gateway running with anonymous streams open, and streaming again once the fault ends', async () => {
    const channel = `/${unique('crash-')}`;
    await until(async () => (await fetch(`${serve.url}/_warren/health`)).status === 200, 'the gateway to connect');
    // Two anonymous listeners that reconnect whenever their stream ends, as EventSource does.
    const readers: SseReader[] = [];
    let stop = false;
    const listen = async (): Promise<void> => {
      while (!stop) {
        const reader = readSse(serve.url, channel);
        readers.push(reader);
        await reader.closed;
        await sleep(20);
      }
    };
    const loops = [listen(), listen()];
    await sleep(300);
    for (let cut = 0; cut < 16 && serve.child.exitCode === null; cut++) {
      proxy.cutAfterConnect(4 + Math.floor(Math.random() * 116));
      proxy.cut();
      await sleep(400);
    }
    proxy.cutAfterConnect(undefined);
    // A connection accepted just before that still has its cut timer (at most 120 ms): let it fire,
    // so that the health check below does not see a connection about to be cut.
    await sleep(300);
    const exitCode = serve.child.exitCode;
    stop = true;
    for (const reader of readers) reader.close();
    await Promise.all(loops);
    assert.equal(exitCode, null, `the gateway exited (code ${exitCode}):\n${serve.output().slice(-2000)}`);

    // Recovered: a fresh anonymous stream gets what is published.
    await until(async () => (await fetch(`${serve.url}/_warren/health`)).status === 200, 'the gateway to reconnect', 15_000);
    const reader = readSse(serve.url, channel);
    try {
      assert.equal(await reader.status, 200);
      await sleep(200);
      assert.equal((await httpPublish(serve.url, channel, 'after the storm')).status, 200);
      await until(() => reader.events.some((e) => e.data === 'after the storm'), 'the message after recovery');
    } finally {
      reader.close();
    }
  });
});
