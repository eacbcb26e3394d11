import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventSource } from 'eventsource';
import { Producer } from '@warren/producer';
import { AMQP_URL, unique, until } from '../support/index.js';
import { startProxiedGateway, type ProxiedGateway } from './support.js';

// Issue 11, fault 3: during a broker outage longer than the `retry:` hint the
// gateway answered EventSource reconnects with 503, and a spec-following
// EventSource closes for good on any answer but 200.
describe('a spec-following EventSource through a broker outage', { timeout: 120_000 }, () => {
  let gw: ProxiedGateway;
  let producer: Producer;
  before(async () => {
    gw = await startProxiedGateway({ sseRetryMs: 200, sseHeartbeatMs: 500 });
    // Straight to RabbitMQ: the outage is the gateway's, not the producer's.
    producer = new Producer({ url: AMQP_URL });
  });
  after(async () => {
    await producer?.close();
    await gw?.close();
  });

  it('stays open (reconnecting by itself) and receives every message, before and after', async () => {
    const channel = `/${unique('es-outage-')}`;
    const consumer = unique('c');
    const es = new EventSource(`${gw.url}${channel}?consumer_id=${consumer}`);
    const got: string[] = [];
    es.addEventListener('message', (e: MessageEvent) => got.push(String(e.data)));
    try {
      await new Promise((resolve, reject) => {
        es.addEventListener('open', resolve, { once: true });
        es.addEventListener('error', reject, { once: true });
      });
      for (let i = 0; i < 5; i++) await producer.publish(`before-${i}`).to(channel);
      await until(() => got.length === 5, 'the messages before the outage');

      // The outage: the gateway loses RabbitMQ and cannot reach it for 2 s (ten retry hints).
      gw.proxy.refuse(true);
      gw.proxy.cut();
      await until(() => !gw.gateway.broker.ready, 'the gateway to notice');
      await sleep(2000);
      assert.notEqual(es.readyState, EventSource.CLOSED, 'the EventSource closed for good during the outage');
      gw.proxy.refuse(false);
      await until(() => gw.gateway.broker.ready, 'the gateway to reconnect', 15_000);

      for (let i = 0; i < 5; i++) await producer.publish(`after-${i}`).to(channel);
      await until(
        () => got.filter((m) => m.startsWith('after-')).length === 5 || es.readyState === EventSource.CLOSED,
        'the messages after the outage',
        15_000,
      );
      assert.notEqual(es.readyState, EventSource.CLOSED, 'the EventSource closed for good');
      assert.deepEqual(
        [...new Set(got)],
        [...Array.from({ length: 5 }, (_, i) => `before-${i}`), ...Array.from({ length: 5 }, (_, i) => `after-${i}`)],
      );
    } finally {
      es.close();
    }
  });
});
