import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import { confirmError, EXCHANGE_TYPE, routingKey, toWireProperties, WarrenError, type WarrenMessage } from '@warren/protocol';
import type { Transport } from './transport.js';

const unavailable = (message: string, cause: unknown): WarrenError => new WarrenError('BROKER_UNAVAILABLE', message, { cause });

/**
 * Publishes straight to RabbitMQ on one connection and one confirm channel,
 * opened on first use and again on the first publish after a loss. The
 * exchange is asserted once per connection, never per publish.
 */
export class AmqpTransport implements Transport {
  private connection: ChannelModel | undefined;
  private channel: Promise<ConfirmChannel> | undefined;
  private drained: Promise<void> | undefined;

  constructor(
    private readonly url: string,
    private readonly exchange: string,
  ) {}

  async send(channels: readonly string[], message: WarrenMessage): Promise<void> {
    const ch = await this.open();
    await Promise.all(channels.map((channel) => this.publishOne(ch, channel, message)));
  }

  async close(): Promise<void> {
    const connection = this.connection;
    this.connection = undefined;
    this.channel = undefined;
    if (connection !== undefined) await connection.close().catch(() => undefined);
  }

  private async publishOne(ch: ConfirmChannel, channel: string, message: WarrenMessage): Promise<void> {
    while (this.drained !== undefined) await this.drained;
    await new Promise<void>((resolve, reject) => {
      let ok: boolean;
      try {
        ok = ch.publish(this.exchange, routingKey(channel), message.body, toWireProperties(message), (err: unknown) =>
          err == null ? resolve() : reject(confirmError(err)),
        );
      } catch (err) {
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
        connection = await amqp.connect(this.url, {
          clientProperties: { connection_name: `warren-producer pid=${process.pid}` },
          timeout: 5000,
          noDelay: true, // no Nagle delay between small frames
        });
        const ch = await connection.createConfirmChannel();
        await ch.assertExchange(this.exchange, EXCHANGE_TYPE, { durable: true });
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
