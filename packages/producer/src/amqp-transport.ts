import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import { confirmError, EXCHANGE_TYPE, Returns, routingKey, toWireProperties, WarrenError, type WarrenMessage } from '@warren/protocol';
import type { PublishTransport, Sent } from './transport.js';

const unavailable = (message: string, cause: unknown): WarrenError => new WarrenError('BROKER_UNAVAILABLE', message, { cause });

/**
 * Publishes straight to RabbitMQ on one connection and one confirm channel,
 * opened on first use and again on the first publish after a loss. The
 * exchange is asserted once per connection, never per publish. Every publish
 * is `mandatory`: RabbitMQ returns a message no queue or stream is bound to,
 * just before confirming it, which is how a publish learns it was not routed
 * ({@link Returns}).
 */
export class AmqpTransport implements PublishTransport {
  private connection: ChannelModel | undefined;
  private channel: Promise<ConfirmChannel> | undefined;
  private drained: Promise<void> | undefined;
  private readonly returns = new WeakMap<ConfirmChannel, Returns>();

  constructor(
    private readonly url: string,
    private readonly exchange: string,
    private readonly timeoutMs: number,
    private readonly heartbeatSeconds: number,
  ) {}

  async send(channels: readonly string[], message: WarrenMessage): Promise<Sent> {
    let timer: NodeJS.Timeout | undefined;
    const ch = await Promise.race([
      this.open(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new WarrenError('BROKER_TIMEOUT', `RabbitMQ did not open a channel within ${this.timeoutMs} ms`)),
          this.timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    const routed = await Promise.all(channels.map((channel) => this.publishOne(ch, channel, message)));
    return { unrouted: channels.filter((_, i) => !routed[i]) };
  }

  async close(): Promise<void> {
    const connection = this.connection;
    this.connection = undefined;
    this.channel = undefined;
    if (connection !== undefined) await closeWithin(connection, this.timeoutMs);
  }

  /** Resolves with `false` when RabbitMQ returned the message (nothing bound to `channel`). */
  private async publishOne(ch: ConfirmChannel, channel: string, message: WarrenMessage): Promise<boolean> {
    while (this.drained !== undefined) await this.drained;
    const returns = this.returns.get(ch);
    const key = routingKey(channel);
    return new Promise<boolean>((resolve, reject) => {
      let ok: boolean;
      // A stalled broker (or a dead connection not yet noticed) never confirms.
      const timer = setTimeout(
        () =>
          reject(
            new WarrenError(
              'BROKER_TIMEOUT',
              `RabbitMQ did not confirm the message within ${this.timeoutMs} ms; it may still be delivered`,
            ),
          ),
        this.timeoutMs,
      );
      try {
        ok = ch.publish(this.exchange, key, message.body, { ...toWireProperties(message), mandatory: true }, (err: unknown) => {
          clearTimeout(timer);
          const returned = returns?.take(key, message.id) ?? false;
          if (err == null) resolve(!returned);
          else reject(confirmError(err));
        });
      } catch (err) {
        clearTimeout(timer);
        reject(unavailable('the connection to RabbitMQ is closed', err));
        return;
      }
      if (!ok && this.drained === undefined) {
        this.drained = new Promise<void>((done) => {
          const finish = (): void => {
            ch.off('drain', finish);
            ch.off('close', finish);
            this.drained = undefined;
            done();
          };
          ch.on('drain', finish);
          ch.on('close', finish);
        });
      }
    });
  }

  private open(): Promise<ConfirmChannel> {
    if (this.channel !== undefined) return this.channel;
    const opening = (async () => {
      let connection: ChannelModel | undefined;
      try {
        connection = await amqp.connect(withHeartbeat(this.url, this.heartbeatSeconds), {
          clientProperties: { connection_name: `warren-producer pid=${process.pid}` },
          timeout: Math.min(this.timeoutMs, 5000),
          noDelay: true, // no Nagle delay between small frames
        });
        const ch = await connection.createConfirmChannel();
        const returns = new Returns();
        this.returns.set(ch, returns);
        ch.on('return', (msg: { fields: { routingKey: string }; properties: { messageId?: unknown } }) =>
          returns.add(msg.fields.routingKey, msg.properties.messageId),
        );
        ch.on('close', () => returns.clear());
        await useExchange(connection, this.exchange);
        const forget = (): void => {
          if (this.connection === connection) {
            this.connection = undefined;
            this.channel = undefined;
          }
        };
        connection.on('error', () => undefined); // 'close' follows; the next publish reconnects
        connection.on('close', forget);
        ch.on('error', () => undefined);
        ch.on('close', forget);
        this.connection = connection;
        return ch;
      } catch (err) {
        if (connection !== undefined) await connection.close().catch(() => undefined);
        throw unavailable(`cannot reach RabbitMQ: ${(err as Error).message}`, err);
      }
    })();
    this.channel = opening;
    opening.catch(() => {
      if (this.channel === opening) this.channel = undefined;
    });
    return opening;
  }
}

/**
 * Makes sure `exchange` exists: one that does is used whatever its type (a
 * gateway with wildcard routes makes it a topic exchange, which routes a
 * channel's key as a direct one does); a missing one is declared `direct`.
 * On channels of their own: RabbitMQ closes the channel of a refused check.
 */
async function useExchange(connection: ChannelModel, exchange: string): Promise<void> {
  const look = await connection.createChannel();
  look.on('error', () => undefined);
  try {
    await look.checkExchange(exchange);
    await look.close();
    return;
  } catch (err) {
    if ((err as { code?: number }).code !== 404) throw err;
  }
  const declare = await connection.createChannel();
  declare.on('error', () => undefined);
  await declare.assertExchange(exchange, EXCHANGE_TYPE, { durable: true });
  await declare.close();
}

/** `url` with `heartbeat=<seconds>` unless it names its own. */
function withHeartbeat(url: string, seconds: number): string {
  const parsed = new URL(url);
  if (parsed.searchParams.has('heartbeat')) return url;
  parsed.searchParams.set('heartbeat', String(seconds));
  return parsed.toString();
}

/**
 * Closes `connection`, or destroys its socket when the broker does not
 * answer the close within `ms` (a stalled broker, a dead path).
 */
async function closeWithin(connection: ChannelModel, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const closed = await Promise.race([
    connection.close().then(
      () => true,
      () => true,
    ),
    new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ]);
  clearTimeout(timer);
  if (!closed) (connection as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}
