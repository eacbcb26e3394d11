// A publish says whether anything was bound to receive it (issue 16 item 2):
// `routed` and `unrouted`, over the producer SDK (AMQP and HTTP) and the HTTP
// endpoint, on RabbitMQ and on the embedded broker.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import amqp from 'amqplib';
import { Producer } from '@warren/producer';
import { consumerQueueName } from '@warren/protocol';
import { closeAndClean } from './support/channel-logs.js';
import { AMQP_URL, httpPublish, poll, readSse, startGateway, TOKEN, unique, until, warren, type TestGateway } from './support/index.js';

const SHARDS = 2;

const cases = [
  { name: 'the producer SDK over AMQP', broker: 'rabbitmq' as const, via: 'amqp' as const },
  { name: 'the producer SDK over HTTP, embedded broker', broker: 'memory' as const, via: 'sdk-http' as const },
  { name: 'the producer SDK over HTTP, RabbitMQ', broker: 'rabbitmq' as const, via: 'sdk-http' as const },
  { name: 'the HTTP endpoint, embedded broker', broker: 'memory' as const, via: 'endpoint' as const },
  { name: 'the HTTP endpoint, RabbitMQ', broker: 'rabbitmq' as const, via: 'endpoint' as const },
];

interface Routing {
  id: string;
  channels: string[];
  routed: boolean;
  unrouted: string[];
}

for (const c of cases) {
  describe(`publish routing through ${c.name}`, () => {
    const prefix = unique('/rt-');
    const exchange = unique('warren-rt-');
    let gw: TestGateway;
    let producer: Producer | undefined;
    const queues: string[] = [];

    /** A consumer queue for `channel`, made by a poll (deleted after the suite). */
    const consume = async (channel: string): Promise<string> => {
      const consumerId = unique('c-');
      queues.push(consumerQueueName(consumerId, channel));
      await poll(gw.url, channel, { consumerId, timeout: 0 });
      return consumerId;
    };

    const publish = async (channels: string[], body: string, id?: string): Promise<Routing> => {
      if (c.via === 'endpoint') {
        const res = await httpPublish(gw.url, channels, body, id === undefined ? {} : { 'message-id': id });
        assert.equal(res.status, 200, JSON.stringify(res.json));
        return res.json as Routing;
      }
      return producer!.publish(body, id === undefined ? {} : { id }).to(channels);
    };

    before(async () => {
      gw = await startGateway(c.broker, { exchange, logRoutes: `${prefix}/logged/`, logShards: SHARDS, queueExpiresMs: 30_000 });
      await until(() => gw.gateway.broker.ready, 'the broker is connected');
      if (c.via === 'amqp') producer = new Producer({ url: AMQP_URL, exchange });
      if (c.via === 'sdk-http') producer = new Producer({ url: gw.url, token: TOKEN });
    });
    after(async () => {
      await producer?.close();
      if (c.broker === 'rabbitmq') {
        const conn = await amqp.connect(AMQP_URL);
        const ch = await conn.createChannel();
        for (const queue of queues) await ch.deleteQueue(queue);
        await conn.close();
      }
      await closeAndClean(gw, exchange, c.broker, SHARDS);
    });

    it('a channel nobody consumes: routed false, the channel unrouted', async () => {
      const channel = `${prefix}/nobody`;
      const result = await publish([channel], 'lost');
      assert.equal(result.routed, false);
      assert.deepEqual(result.unrouted, [channel]);
      assert.deepEqual(result.channels, [channel]);
    });

    if (c.via === 'endpoint' && c.broker === 'memory') {
      it('`warren publish` says on standard error when nobody got the message, and exits 0', async () => {
        const nobody = await warren(['publish', `${prefix}/cli-nobody`, 'x', '--url', gw.url, '--token', TOKEN]);
        assert.equal(nobody.code, 0, nobody.stderr);
        assert.match(nobody.stderr, /^warren: nobody got [0-9a-f-]{36}: no queue or log is bound to \/rt-\w+\/cli-nobody\n$/);
        const channel = `${prefix}/cli-heard`;
        await consume(channel);
        const heard = await warren(['publish', channel, 'x', '--url', gw.url, '--token', TOKEN]);
        assert.equal(heard.code, 0, heard.stderr);
        assert.equal(heard.stderr, '');
      });
    }

    it('a channel with consumers: routed true, nothing unrouted; a consumer gets it', async () => {
      const channel = `${prefix}/two`;
      const first = await consume(channel);
      await consume(channel);
      const result = await publish([channel], 'found');
      assert.equal(result.routed, true);
      assert.deepEqual(result.unrouted, []);
      assert.equal((await poll(gw.url, channel, { consumerId: first, timeout: 2 })).body, 'found');
    });

    it('several channels: unrouted names the ones nobody consumes, in order', async () => {
      const a = `${prefix}/a`;
      const b = `${prefix}/b`;
      const d = `${prefix}/d`;
      await consume(b);
      const result = await publish([a, b, d], 'some');
      assert.equal(result.routed, true);
      assert.deepEqual(result.unrouted, [a, d]);
    });

    it('an anonymous SSE listener counts (its gateway fan-out queue)', async () => {
      const channel = `${prefix}/anon`;
      const sse = readSse(gw.url, channel);
      try {
        assert.equal(await sse.status, 200);
        // The fan-out queue is bound once the stream is subscribed: publish until the listener is reached.
        let result: Routing | undefined;
        await until(async () => (result = await publish([channel], 'to-anon')).routed, 'the listener is subscribed', 5000, 50);
        assert.deepEqual(result!.unrouted, []);
      } finally {
        sse.close();
      }
    });

    it('a logged channel nobody listens to counts as routed once its log is bound', async () => {
      const channel = `${prefix}/logged/news`;
      // Through the gateway the log is bound before the publish; an AMQP
      // publisher relies on a gateway having touched the channel first.
      if (c.via === 'amqp') assert.equal((await httpPublish(gw.url, channel, 'bind')).status, 200);
      const result = await publish([channel], 'kept');
      assert.equal(result.routed, true);
      assert.deepEqual(result.unrouted, []);
    });

    it('concurrent publishes, routed and not, with repeated ids, each get their own answer', async () => {
      const yes = `${prefix}/yes`;
      const no = `${prefix}/no`;
      await consume(yes);
      const n = c.via === 'endpoint' ? 40 : 200;
      const results = await Promise.all(
        Array.from({ length: n }, (_, i) => {
          const targets = i % 3 === 0 ? [yes] : i % 3 === 1 ? [no] : [no, yes];
          return publish(targets, String(i), `dup-${i % 4}`).then((r) => ({ i, targets, r }));
        }),
      );
      for (const { i, targets, r } of results) {
        assert.deepEqual(
          r.unrouted,
          targets.filter((t) => t === no),
          `publish ${i}`,
        );
        assert.equal(r.routed, targets.includes(yes), `publish ${i}`);
      }
    });
  });
}
