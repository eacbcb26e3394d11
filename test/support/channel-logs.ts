// What the channel-log tests share: publishing a run of messages, naming
// them, and deleting the streams and exchange a test gateway declared.
import assert from 'node:assert/strict';
import amqp from 'amqplib';
import { channelLogName } from '@warren/protocol';
import { AMQP_URL, httpPublish, type TestGateway } from './index.js';

/** Publishes `texts` to `channel` through the gateway's HTTP endpoint, one after another. */
export async function publishAll(gw: TestGateway, channel: string, texts: string[]): Promise<void> {
  for (const text of texts) assert.equal((await httpPublish(gw.url, channel, text)).status, 200);
}

/** `m<from>` … `m<to - 1>` (another prefix if given). */
export const range = (from: number, to: number, prefix = 'm'): string[] =>
  Array.from({ length: to - from }, (_, i) => `${prefix}${from + i}`);

/** Closes a gateway and deletes its `shards` logs (and, on RabbitMQ, its exchange). */
export async function closeAndClean(gw: TestGateway, exchange: string, kind: string, shards: number): Promise<void> {
  for (let shard = 0; shard < shards; shard++) await gw.gateway.broker.deleteLog(channelLogName(shard, exchange));
  await gw.close();
  if (kind === 'rabbitmq') {
    const conn = await amqp.connect(AMQP_URL);
    await (await conn.createChannel()).deleteExchange(exchange);
    await conn.close();
  }
}
