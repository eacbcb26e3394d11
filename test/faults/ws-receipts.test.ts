import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { WebSocket } from 'ws';
import { Producer } from '@warren/producer';
import { AMQP_URL, startGateway, unique, until, type TestGateway } from '../support/index.js';

// Issue 11, fault 2: an identified warren.v1 socket that stops reading was
// dropped by the ping timeout after its messages had been acknowledged on
// reaching the kernel: what sat in the socket buffers was gone for good.
describe('an identified warren.v1 socket that stops reading', { timeout: 120_000 }, () => {
  let gw: TestGateway;
  let producer: Producer;
  before(async () => {
    gw = await startGateway('rabbitmq', { wsPingIntervalMs: 300 });
    producer = new Producer({ url: AMQP_URL });
  });
  after(async () => {
    await producer?.close();
    await gw?.close();
  });

  it('loses no confirmed message: what it never read comes again on the next socket', async () => {
    const channel = `/${unique('slow-ws-')}`;
    const consumer = unique('c');
    const url = `${gw.url.replace('http', 'ws')}/_warren/ws?consumer_id=${consumer}`;
    const first = new WebSocket(url, 'warren.v1');
    await new Promise((resolve, reject) => {
      first.once('open', resolve);
      first.once('error', reject);
    });
    const subscribed = new Promise<void>((resolve) =>
      first.on('message', (data) => JSON.parse(String(data)).type === 'subscribed' && resolve()),
    );
    first.send(JSON.stringify({ type: 'subscribe', channel }));
    await subscribed;
    // The client stops reading: pings, pongs and messages pile up in the socket buffers.
    (first as unknown as { _socket: { pause(): void } })._socket.pause();

    const total = 3000;
    const body = 'x'.repeat(2000);
    for (let start = 0; start < total; start += 100) {
      await Promise.all(
        Array.from({ length: Math.min(100, total - start) }, (_, i) =>
          producer.publish(`${start + i}:${body}`, { id: `m-${start + i}` }).to(channel),
        ),
      );
    }
    // The gateway gives up on the silent socket.
    await until(() => gw.gateway.stats().streams.websocket === 0, 'the gateway to drop the silent socket', 20_000);
    first.terminate();

    const seen = new Set<number>();
    const second = new WebSocket(url, 'warren.v1');
    second.on('message', (data) => {
      const frame = JSON.parse(String(data)) as { type: string; data?: string };
      if (frame.type === 'message') seen.add(Number(frame.data!.split(':', 1)[0]));
    });
    await new Promise((resolve, reject) => {
      second.once('open', resolve);
      second.once('error', reject);
    });
    second.send(JSON.stringify({ type: 'subscribe', channel }));
    try {
      await until(() => seen.size === total, `all ${total} messages (have ${seen.size})`, 30_000, 100).catch(() => undefined);
      const missing = Array.from({ length: total }, (_, i) => i).filter((i) => !seen.has(i));
      assert.equal(missing.length, 0, `${missing.length} confirmed messages never arrived, e.g. ${missing.slice(0, 5).join(', ')}`);
    } finally {
      second.close();
    }
  });
});
