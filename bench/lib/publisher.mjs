// The one publisher of every scenario. Each message body carries its phase,
// its sequence number and its send time (stamped just before it is handed to
// the transport). To Warren and the RabbitMQ ceiling it publishes straight to
// RabbitMQ as the producer SDK does (exchange `warren`, routing key = channel,
// persistent, message id, publisher confirms); to the Node ceiling it writes
// the same bodies, in order, on one TCP connection that acknowledges each.
// "As fast as possible" keeps `window` messages unacknowledged; "rate" sends
// on a fixed schedule.
import { once } from 'node:events';
import { connect } from 'node:net';
import amqp from 'amqplib';
import { DEFAULT_EXCHANGE, EXCHANGE_TYPE, toWireProperties } from '@warren/protocol';
import { now, stampBody } from './tracker.mjs';
import { sleep } from './system.mjs';

export class AmqpPublisher {
  /** `persistent: false` sends transient messages (delivery mode 1) instead of the SDK's persistent ones. */
  /** `exchange`: another than `warren`, for a gateway started with `--exchange`. */
  static async connect(url, { persistent = true, exchange = DEFAULT_EXCHANGE } = {}) {
    const conn = await amqp.connect(url, { noDelay: true, clientProperties: { connection_name: 'warren-bench publisher' } });
    conn.on('error', () => undefined);
    const ch = await conn.createConfirmChannel();
    await ch.assertExchange(exchange, EXCHANGE_TYPE, { durable: true });
    return new AmqpPublisher(conn, ch, persistent, exchange);
  }

  constructor(conn, ch, persistent, exchange = DEFAULT_EXCHANGE) {
    this.conn = conn;
    this.ch = ch;
    this.persistent = persistent;
    this.exchange = exchange;
  }

  /** Resolves once the broker confirmed it. */
  send(channel, id, body) {
    return new Promise((resolve, reject) => {
      const props = toWireProperties({ id, contentType: 'application/json', body, publishedAt: Date.now() });
      if (!this.persistent) props.persistent = false;
      this.ch.publish(this.exchange, channel, Buffer.from(body, 'latin1'), props, (err) => (err == null ? resolve() : reject(err)));
    });
  }

  async close() {
    await this.conn.close().catch(() => undefined);
  }
}

/** To the Node ceiling: lines `<id>\t<body>\n` on one TCP connection, each acknowledged by a `\n`. */
export class FeedPublisher {
  static async connect(port) {
    const socket = connect({ host: '127.0.0.1', port, noDelay: true });
    await once(socket, 'connect');
    return new FeedPublisher(socket);
  }

  constructor(socket) {
    this.socket = socket;
    this.waiting = [];
    socket.setEncoding('latin1');
    socket.on('data', (chunk) => {
      for (let i = 0; i < chunk.length; i++) this.waiting.shift()?.resolve();
    });
    const fail = (err) => {
      for (const w of this.waiting.splice(0)) w.reject(err ?? new Error('feed closed'));
    };
    socket.on('error', fail);
    socket.on('close', () => fail());
  }

  send(_channel, id, body) {
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.socket.write(`${id}\t${body}\n`);
    });
  }

  async close() {
    this.socket.destroy();
  }
}

/**
 * Publishes messages 0..m-1 of `phase` to `channel`. With `rate` (messages
 * per second) on a fixed schedule, else as fast as `window` unconfirmed
 * messages allow. Resolves { startAt, endAt, confirmed, failed } once every
 * message is confirmed (or `timeoutMs` passed).
 */
export async function publish(publisher, { channel, phase, m, size, rate, window = 64, timeoutMs = 120_000, idPrefix }) {
  const startAt = now();
  const deadline = startAt + timeoutMs;
  let inFlight = 0;
  let confirmed = 0;
  let failed = 0;
  let wake;
  const settled = () => {
    inFlight--;
    wake?.();
  };
  for (let seq = 0; seq < m && now() < deadline; seq++) {
    if (rate !== undefined) {
      const due = startAt + (seq * 1000) / rate;
      const wait = due - now();
      if (wait > 0) await sleep(wait);
    }
    while (inFlight >= window && now() < deadline) await new Promise((r) => ((wake = r), setTimeout(r, 100)));
    inFlight++;
    publisher.send(channel, `${idPrefix}-${phase}-${seq}`, stampBody(phase, seq, size)).then(
      () => {
        confirmed++;
        settled();
      },
      () => {
        failed++;
        settled();
      },
    );
  }
  const sentAt = now();
  while (inFlight > 0 && now() < deadline) await new Promise((r) => ((wake = r), setTimeout(r, 100)));
  return { startAt, sentAt, endAt: now(), confirmed, failed };
}
