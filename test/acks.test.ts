import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import amqp from 'amqplib';
import { Producer } from '@warren/producer';
import { consumerQueueName } from '@warren/protocol';
import { AMQP_URL, readSse, unique, until, type SseReader } from './support/index.js';
import { startProxiedGateway, type ProxiedGateway } from './faults/support.js';

/** One `basic.ack` frame on the wire: frame header 7, class and method 4, delivery tag 8, flags 1, frame end 1. */
const ACK_FRAME_BYTES = 21;

// Identified streams acknowledge each message once it is received. Acked one
// frame per message, 600 deliveries cost RabbitMQ 600 frames (12.6 kB from
// the gateway); the acks of one turn on one AMQP channel now leave as one
// `basic.ack multiple`. Measured on the wire, through a TCP proxy between the
// gateway and RabbitMQ, and checked for what matters: every message
// acknowledged exactly once, none left in a queue, no channel error.
describe('acknowledgements of identified streams, on RabbitMQ', { timeout: 60_000 }, () => {
  let gw: ProxiedGateway;
  let producer: Producer;
  before(async () => {
    gw = await startProxiedGateway();
    // Straight to RabbitMQ: the proxy sees only the gateway's frames.
    producer = new Producer({ url: AMQP_URL });
  });
  after(async () => {
    await producer?.close();
    await gw?.close();
  });

  it('acknowledges 600 deliveries to 20 SSE streams in a few frames, each exactly once', async (t) => {
    const channel = `/${unique('acks-')}`;
    const consumers = Array.from({ length: 20 }, (_, i) => unique(`acks-c${i}-`));
    const streams: SseReader[] = consumers.map((id) => readSse(gw.url, `${channel}?consumer_id=${id}`));
    const connection = await amqp.connect(AMQP_URL);
    const admin = await connection.createChannel();
    try {
      for (const s of streams) assert.equal(await s.status, 200);
      const stats = (): ReturnType<typeof gw.gateway.stats>['broker'] => gw.gateway.stats().broker;
      await new Promise((resolve) => setTimeout(resolve, 300));
      const before = { ...stats() };
      const bytesBefore = gw.proxy.bytesToTarget;

      // 30 each: under half the stream prefetch (64), so every ack waits for its receipt time.
      const MESSAGES = 30;
      for (let i = 0; i < MESSAGES; i++) await producer.publish(`m${i}`, { id: `m-${i}` }).to(channel);
      await until(() => streams.every((s) => s.events.length === MESSAGES), 'every stream to receive every message');
      const expected = MESSAGES * streams.length;
      await until(() => stats().acked - before.acked === expected, `${expected} acks`, 5_000);
      // Let a late frame show up if there were one.
      await new Promise((resolve) => setTimeout(resolve, 300));

      const after = stats();
      const bytes = gw.proxy.bytesToTarget - bytesBefore;
      t.diagnostic(`${expected} acks: ${after.ackFrames - before.ackFrames} ack frames, ${bytes} bytes to RabbitMQ`);
      assert.equal(after.acked - before.acked, expected, 'each delivery acknowledged once');
      assert.equal(after.requeued - before.requeued, 0);
      assert.equal(after.channelsOpened, before.channelsOpened, 'no channel closed by an unknown delivery tag');
      assert.ok(
        bytes <= (expected * ACK_FRAME_BYTES) / 10,
        `the gateway sent ${bytes} bytes to RabbitMQ for ${expected} acks (one frame each: ${expected * ACK_FRAME_BYTES})`,
      );
      assert.ok(after.ackFrames - before.ackFrames <= expected / 10, `ack frames: ${after.ackFrames - before.ackFrames}`);
      for (const s of streams) {
        assert.deepEqual(
          s.events.map((e) => e.id),
          Array.from({ length: MESSAGES }, (_, i) => `m-${i}`),
        );
      }

      // Nothing comes back when the streams end: RabbitMQ holds no unacknowledged delivery.
      for (const s of streams) s.close();
      await until(() => gw.gateway.connections.size === 0, 'the streams to close');
      await until(() => gw.gateway.stats().broker.activeConsumers === 0, 'the consumers to be cancelled');
      for (const id of consumers) {
        const { messageCount } = await admin.checkQueue(consumerQueueName(id, channel));
        assert.equal(messageCount, 0, `${id}'s queue is empty`);
      }
      assert.equal(stats().requeued - before.requeued, 0);
    } finally {
      for (const s of streams) s.close();
      for (const id of consumers) await admin.deleteQueue(consumerQueueName(id, channel)).catch(() => undefined);
      await connection.close().catch(() => undefined);
    }
  });
});
