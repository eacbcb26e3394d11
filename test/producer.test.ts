import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import amqp from 'amqplib';
import { Producer, WarrenError } from '@warren/producer';
import { AMQP_URL, poll, requireRabbit, startGateway, TOKEN, unique, type TestGateway } from './support/index.js';

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof WarrenError, `expected a WarrenError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

const transports = [
  { name: 'amqp', gateway: 'rabbitmq' as const },
  { name: 'http (embedded broker)', gateway: 'memory' as const },
  { name: 'http (RabbitMQ)', gateway: 'rabbitmq' as const },
];

for (const t of transports) {
  describe(`Producer over ${t.name}`, () => {
    let gw: TestGateway;
    let producer: Producer;
    before(async () => {
      gw = await startGateway(t.gateway);
      producer = new Producer(t.name === 'amqp' ? { url: AMQP_URL } : { url: gw.url, token: TOKEN });
    });
    after(async () => {
      await producer.close();
      await gw.close();
    });

    it('publishes text, bytes and JSON with the right content types, ids and events', async () => {
      const channel = `/${unique('sdk-')}`;
      const consumerId = unique('c-');
      await poll(gw.url, channel, { consumerId, timeout: 0 });
      const text = await producer.publish('hi there!').to(channel);
      assert.match(text.id, /^[0-9a-f-]{36}$/);
      assert.deepEqual(text.channels, [channel]);
      await producer.publish(Buffer.from([0, 1, 2, 255]), { id: 'bin-1' }).to(channel);
      await producer.publish({ price: 42, symbol: 'ACME' }, { event: 'tick' }).to(channel);
      await producer.publish('<b>hi</b>', { contentType: 'text/html; charset=utf-8' }).to(channel);

      const a = await poll(gw.url, channel, { consumerId, timeout: 2 });
      assert.equal(a.body, 'hi there!');
      assert.equal(a.headers['content-type'], 'text/plain; charset=utf-8');
      assert.equal(a.headers['message-id'], text.id);
      const b = await poll(gw.url, channel, { consumerId, timeout: 2 });
      assert.equal(b.headers['content-type'], 'application/octet-stream');
      assert.equal(b.headers['message-id'], 'bin-1');
      assert.deepEqual(Buffer.from(b.body, 'latin1').length, 4);
      const c = await poll(gw.url, channel, { consumerId, timeout: 2 });
      assert.equal(c.headers['content-type'], 'application/json');
      assert.equal(c.headers['warren-event'], 'tick');
      assert.deepEqual(JSON.parse(c.body), { price: 42, symbol: 'ACME' });
      const d = await poll(gw.url, channel, { consumerId, timeout: 2 });
      assert.equal(d.headers['content-type'], 'text/html; charset=utf-8');
    });

    it('.to() takes several channels; each gets the message with the same id', async () => {
      const channels = [`/${unique('m1-')}`, `/${unique('m2-')}`];
      const consumerId = unique('c-');
      for (const ch of channels) await poll(gw.url, ch, { consumerId, timeout: 0 });
      const result = await producer.publish('everywhere').to([...channels, channels[0]!]);
      assert.deepEqual(result.channels, channels);
      for (const ch of channels) {
        const res = await poll(gw.url, ch, { consumerId, timeout: 2 });
        assert.equal(res.body, 'everywhere');
        assert.equal(res.headers['message-id'], result.id);
      }
    });

    it('rejects bad input with coded errors before sending', async () => {
      await rejectsWith(producer.publish('x').to('no-slash'), 'INVALID_CHANNEL');
      await rejectsWith(producer.publish('x').to([]), 'INVALID_CHANNEL');
      await rejectsWith(producer.publish('x', { id: 'bad id' }).to('/ok'), 'INVALID_MESSAGE_ID');
      await rejectsWith(producer.publish('x', { event: 'bad event' }).to('/ok'), 'INVALID_EVENT_NAME');
      await rejectsWith(producer.publish('x'.repeat(256 * 1024 + 1)).to('/ok'), 'MESSAGE_TOO_LARGE');
      await rejectsWith(producer.publish({ n: 1n } as unknown as object).to('/ok'), 'INVALID_MESSAGE');
    });

    it('close() waits for publishes in flight; publish() after close() rejects PRODUCER_CLOSED', async () => {
      const own = new Producer(t.name === 'amqp' ? { url: AMQP_URL } : { url: gw.url, token: TOKEN });
      const channel = `/${unique('inflight-')}`;
      const consumerId = unique('c-');
      await poll(gw.url, channel, { consumerId, timeout: 0 });
      const pending = Array.from({ length: 200 }, (_, i) => own.publish(String(i)).to(channel));
      await own.close();
      const results = await Promise.allSettled(pending);
      assert.deepEqual(
        results.filter((r) => r.status === 'rejected'),
        [],
        'every publish started before close() was confirmed',
      );
      await rejectsWith(own.publish('late').to(channel), 'PRODUCER_CLOSED');
      let count = 0;
      while ((await poll(gw.url, channel, { consumerId, timeout: 0.3 })).status === 200) count++;
      assert.equal(count, 200);
    });
  });
}

describe('Producer failures', () => {
  before(() => requireRabbit());

  it('rejects BROKER_UNAVAILABLE when RabbitMQ cannot be reached', async () => {
    const producer = new Producer({ url: 'amqp://guest:guest@127.0.0.1:1' });
    await rejectsWith(producer.publish('x').to('/a'), 'BROKER_UNAVAILABLE');
    await producer.close();
  });

  it('rejects GATEWAY_UNREACHABLE when the gateway cannot be reached', async () => {
    const producer = new Producer({ url: 'http://127.0.0.1:1', token: TOKEN });
    await rejectsWith(producer.publish('x').to('/a'), 'GATEWAY_UNREACHABLE');
    await producer.close();
  });

  it("relays the gateway's code: UNAUTHORIZED for a wrong token", async () => {
    const gw = await startGateway('memory');
    const producer = new Producer({ url: gw.url, token: 'wrong-token-0123456789' });
    try {
      await rejectsWith(producer.publish('x').to('/a'), 'UNAUTHORIZED');
    } finally {
      await producer.close();
      await gw.close();
    }
  });

  it('rejects PUBLISH_NACKED when RabbitMQ refuses the message (a full reject-publish queue)', async () => {
    const channel = `/${unique('nack-')}`;
    const conn = await amqp.connect(AMQP_URL);
    const ch = await conn.createChannel();
    const queue = unique('test-reject-publish-');
    await ch.assertExchange('warren', 'direct', { durable: true });
    await ch.assertQueue(queue, { exclusive: true, arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish' } });
    await ch.bindQueue(queue, 'warren', channel);
    const producer = new Producer({ url: AMQP_URL });
    try {
      await producer.publish('fits').to(channel);
      await rejectsWith(producer.publish('does not fit').to(channel), 'PUBLISH_NACKED');
    } finally {
      await producer.close();
      await conn.close();
    }
  });

  it('rejects bad options at construction', () => {
    assert.throws(() => new Producer({ url: 'ftp://x' }), /amqp:\/\/, amqps:\/\/, http:\/\/ or https:\/\//);
    assert.throws(() => new Producer({ url: 'not a url' }), /not a URL/);
  });
});
