import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { EventSource } from 'eventsource';
import { Producer } from '@warren/producer';
import { AMQP_URL, readSse, unique, until } from '../support/index.js';
import { startProxiedGateway, type ProxiedGateway } from './support.js';

// A broker that answers, but later than `brokerTimeoutMs`: a stream used to
// open (200) as soon as its queue's declaration timed out, before the queue
// was bound, so a message confirmed after the 200 reached no queue of this
// consumer and never arrived. A 200 now means the stream's queue is bound.
describe('a stream opened while RabbitMQ answers late', { timeout: 90_000 }, () => {
  let gw: ProxiedGateway;
  let producer: Producer;
  before(async () => {
    gw = await startProxiedGateway({ brokerTimeoutMs: 300, sseRetryMs: 200 });
    // Straight to RabbitMQ: only the gateway's path is slow.
    producer = new Producer({ url: AMQP_URL });
  });
  after(async () => {
    await producer?.close();
    await gw?.close();
  });

  it('identified (EventSource): a message confirmed after the open is routed to its queue and arrives', async () => {
    const channel = `/${unique('slow-')}`;
    // Every chunk to and from RabbitMQ waits 400 ms: each declaration answers after ~800 ms.
    gw.proxy.delay(400);
    const es = new EventSource(`${gw.url}${channel}?consumer_id=${unique('c')}`);
    const got: string[] = [];
    es.addEventListener('message', (e: MessageEvent) => got.push(String(e.data)));
    try {
      await new Promise((resolve, reject) => {
        es.addEventListener('open', resolve, { once: true });
        es.addEventListener('error', reject, { once: true });
      });
      const result = await producer.publish('after the open', { id: 'm-1' }).to(channel);
      assert.equal(result.routed, true, 'the consumer queue was bound when the stream opened');
      gw.proxy.delay(0);
      // The consumer may time out too (the stream then ends and the EventSource comes back): the queue kept it.
      await until(() => got.length > 0, 'm-1 on the stream', 15_000);
      assert.deepEqual(got, ['after the open']);
    } finally {
      gw.proxy.delay(0);
      es.close();
    }
  });

  it('anonymous: a message confirmed after the 200 is routed to the fan-out queue', async () => {
    const channel = `/${unique('slow-')}`;
    gw.proxy.delay(400);
    const sse = readSse(gw.url, channel);
    try {
      assert.equal(await sse.status, 200);
      const result = await producer.publish('after the 200', { id: 'm-1' }).to(channel);
      assert.equal(result.routed, true, "the gateway's fan-out queue was bound when the stream opened");
    } finally {
      gw.proxy.delay(0);
      sse.close();
    }
  });
});
