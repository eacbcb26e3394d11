// The RabbitMQ ceiling: one Node process with raw amqplib and no HTTP,
// consuming S per-consumer queues declared exactly as the gateway declares
// them (`warren:<consumer>:<channel>`, durable, same arguments, bound to the
// channel on exchange `warren`), on one connection with one consumer channel
// at the gateway's stream prefetch, acknowledging each message once recorded.
// It is both the "server" and the subscribers; the orchestrator drives it
// over IPC like a worker (expect / progress / report).
import amqp from 'amqplib';
import { consumerQueueArguments, consumerQueueName, DEFAULT_EXCHANGE, EXCHANGE_TYPE } from '@warren/protocol';
import { now, SubscriberState, Tracker } from './tracker.mjs';

const tracker = new Tracker();
let connection;
let queues = [];

/** Runs `items` through `fn` on `lanes` AMQP channels at once (each channel's RPCs go one at a time). */
async function onChannels(items, lanes, fn) {
  const channels = await Promise.all(Array.from({ length: lanes }, () => connection.createChannel()));
  await Promise.all(
    channels.map(async (ch, lane) => {
      for (let k = lane; k < items.length; k += lanes) await fn(ch, items[k]);
    }),
  );
  await Promise.all(channels.map((ch) => ch.close().catch(() => undefined)));
}

async function setup({ url, channel, consumers, prefetch, expiresMs, maxLength }) {
  const t0 = now();
  connection = await amqp.connect(url, { noDelay: true, clientProperties: { connection_name: 'warren-bench rabbit-ceiling' } });
  connection.on('error', () => undefined);
  const admin = await connection.createChannel();
  await admin.assertExchange(DEFAULT_EXCHANGE, EXCHANGE_TYPE, { durable: true });
  await admin.close();
  queues = consumers.map((c) => consumerQueueName(c, channel));
  const args = consumerQueueArguments({ expiresMs, maxLength });
  await onChannels(queues, 8, async (ch, q) => {
    await ch.assertQueue(q, { durable: true, arguments: args });
    await ch.bindQueue(q, DEFAULT_EXCHANGE, channel);
  });
  const declaredMs = now() - t0;
  const ch = await connection.createChannel();
  await ch.prefetch(prefetch, false);
  await Promise.all(
    queues.map((q, k) => {
      const state = tracker.add(new SubscriberState(consumers[k]));
      return ch.consume(
        q,
        (msg) => {
          if (msg === null) return;
          const at = now();
          const text = msg.content.toString('latin1');
          const i = text.indexOf('{"g":');
          if (i >= 0) tracker.record(state, text, i, at);
          ch.ack(msg);
        },
        { noAck: false },
      );
    }),
  );
  return { opened: queues.length, failed: 0, errors: {}, ms: now() - t0, declaredMs };
}

async function teardown() {
  if (connection === undefined) return {};
  await onChannels(queues, 8, (ch, q) => ch.deleteQueue(q).catch(() => undefined));
  await connection.close().catch(() => undefined);
  connection = undefined;
  return { deleted: queues.length };
}

const handlers = {
  setup,
  teardown,
  expect: ({ phase, m }) => {
    tracker.expect(phase, m);
    return {};
  },
  progress: () => ({ received: tracker.received, drops: 0, open: tracker.subs.length }),
  report: () => tracker.report({ drops: 0, open: tracker.subs.length }),
  exit: () => {
    setImmediate(() => process.exit(0));
    return {};
  },
};

process.on('message', async (msg) => {
  try {
    process.send({ id: msg.id, ok: true, ...(await handlers[msg.type](msg)) });
  } catch (err) {
    process.send({ id: msg.id, ok: false, error: String(err?.stack ?? err) });
  }
});
process.on('disconnect', () => process.exit(0));
