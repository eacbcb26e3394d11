// The audit of what a consumer missed (docs/audit.md): a consumer queue of an
// audited route dead-letters what it drops on overflow to the audit exchange;
// the gateway moves it into the audit stream, which `GET /_warren/missed` and
// `warren listen --missed` read. Unaudited routes declare no dead-letter exchange.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import amqp from 'amqplib';
import { request } from 'undici';
import { auditExchangeName, auditInboxName, auditLogName, consumerQueueName } from '@warren/protocol';
import {
  AMQP_URL,
  BROKERS,
  httpPublish,
  poll,
  rabbitmqctl,
  startGateway,
  TOKEN,
  unique,
  until,
  warren,
  type TestGateway,
} from './support/index.js';

interface Missed {
  offset: number;
  consumer: string;
  channel: string;
  reason: string;
  time: string;
  id: string;
  body: string;
  encoding: string;
}

async function missed(base: string, query: string, token = TOKEN): Promise<{ status: number; json: any }> {
  const res = await request(`${base}/_warren/missed?${query}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.statusCode, json: JSON.parse(await res.body.text()) };
}

/** `name arguments` of the queues whose name starts with `prefix`, from rabbitmqctl. */
async function queueArguments(prefix: string): Promise<Map<string, string>> {
  const out = await rabbitmqctl('list_queues', '-q', '--no-table-headers', 'name', 'arguments');
  const found = new Map<string, string>();
  for (const line of out.split('\n')) {
    const [name, args] = line.split('\t');
    if (name !== undefined && name.startsWith(prefix)) found.set(name, args ?? '');
  }
  return found;
}

for (const kind of BROKERS) {
  describe(`audit of missed messages on the ${kind} broker`, () => {
    let gw: TestGateway;
    // A private exchange on the shared RabbitMQ: audit exchange, inbox and stream are named after it.
    const exchange = unique('audit-test-');
    const audited = `/${unique('orders')}/`;
    const plain = `/${unique('plain')}/`;
    const consumers: string[] = [];

    before(async () => {
      gw = await startGateway(kind, { exchange, auditRoutes: `${audited},/alerts-${exchange}/`, queueMaxLength: 5 });
    });

    after(async () => {
      await gw.close();
      if (kind !== 'rabbitmq') return;
      const conn = await amqp.connect(AMQP_URL);
      const ch = await conn.createChannel();
      for (const queue of consumers) await ch.deleteQueue(queue);
      await ch.deleteQueue(auditInboxName(exchange));
      await ch.deleteQueue(auditLogName(exchange));
      await ch.deleteExchange(auditExchangeName(exchange));
      await ch.deleteExchange(exchange);
      await conn.close();
    });

    /** A consumer that polls once (making its queue), is away while 12 messages are published, then comes back. */
    async function awayWhile12(channel: string): Promise<{ consumer: string; received: string[]; ids: string[] }> {
      const consumer = unique('away-');
      consumers.push(consumerQueueName(consumer, channel));
      const first = await poll(gw.url, channel, { consumerId: consumer, timeout: 0 });
      assert.equal(first.status, 204);
      const ids = Array.from({ length: 12 }, (_, i) => `${consumer}-m${i + 1}`);
      for (const [i, id] of ids.entries()) {
        const res = await httpPublish(gw.url, channel, `body ${i + 1}`, { 'message-id': id });
        assert.equal(res.status, 200, JSON.stringify(res.json));
      }
      const received: string[] = [];
      for (;;) {
        const res = await poll(gw.url, channel, { consumerId: consumer, timeout: 0 });
        if (res.status === 204) break;
        assert.equal(res.status, 200, res.body);
        received.push(res.headers['message-id'] as string);
      }
      return { consumer, received, ids };
    }

    it('a consumer away while 12 messages are published gets the last 5; the audit has exactly the 7 it missed', async () => {
      const channel = `${audited}room`;
      const { consumer, received, ids } = await awayWhile12(channel);
      assert.deepEqual(received, ids.slice(7));
      const query = new URLSearchParams({ consumer, channel }).toString();
      let page: { status: number; json: any } = { status: 0, json: undefined };
      await until(
        async () => {
          page = await missed(gw.url, query);
          return page.status === 200 && page.json.missed.length >= 7;
        },
        'the 7 dead letters in the audit',
        15_000,
        200,
      );
      const entries = page.json.missed as Missed[];
      assert.deepEqual(
        entries.map((e) => e.id),
        ids.slice(0, 7),
      );
      for (const [i, e] of entries.entries()) {
        assert.equal(e.consumer, consumer);
        assert.equal(e.channel, channel);
        assert.equal(e.reason, 'maxlen');
        assert.equal(e.body, `body ${i + 1}`);
        assert.equal(e.encoding, 'utf8');
        assert.ok(Math.abs(Date.parse(e.time) - Date.now()) < 60_000, e.time);
      }
      assert.equal(page.json.next, undefined);
      // The same from the embedding API.
      assert.deepEqual(await gw.gateway.missed({ consumerId: consumer, channel }), page.json);

      // Paging: 3, then the rest from `next`.
      const first3 = await missed(gw.url, `${query}&limit=3`);
      assert.deepEqual(
        (first3.json.missed as Missed[]).map((e) => e.id),
        ids.slice(0, 3),
      );
      const rest = await missed(gw.url, `${query}&after=${first3.json.next}`);
      assert.deepEqual(
        (rest.json.missed as Missed[]).map((e) => e.id),
        ids.slice(3, 7),
      );

      // An offset past the end answers an empty page at once (not after the query timeout).
      const started = Date.now();
      const beyond = await missed(gw.url, `${query}&after=999999999`);
      assert.equal(beyond.status, 200);
      assert.deepEqual(beyond.json.missed, []);
      assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`);

      // The same through the CLI.
      const out = await warren(['listen', '--missed', channel, '--consumer-id', consumer, '--url', gw.url, '--token', TOKEN]);
      assert.equal(out.code, 0, out.stderr);
      const lines = out.stdout
        .trimEnd()
        .split('\n')
        .map((l) => l.split('\t'));
      assert.deepEqual(
        lines.map(([c, ch, reason, , id, body]) => [c, ch, reason, id, body]),
        ids.slice(0, 7).map((id, i) => [consumer, channel, 'maxlen', id, `body ${i + 1}`]),
      );
    });

    it('an unaudited route makes no audit entries', async () => {
      const channel = `${plain}room`;
      const { consumer, received, ids } = await awayWhile12(channel);
      assert.deepEqual(received, ids.slice(7));
      // A query appends its mark after anything dead-lettered before it: nothing is late.
      await new Promise((r) => setTimeout(r, 300));
      const page = await missed(gw.url, new URLSearchParams({ consumer }).toString());
      assert.equal(page.status, 200);
      assert.deepEqual(page.json.missed, []);
    });

    if (kind === 'rabbitmq') {
      it('declares the dead-letter exchange on audited queues only', async () => {
        const args = await queueArguments('warren:away-');
        const ours = [...args].filter(([name]) => consumers.includes(name));
        assert.equal(ours.length, 2, JSON.stringify([...args]));
        for (const [name, value] of ours) {
          if (name.includes(audited)) assert.match(value, new RegExp(`"x-dead-letter-exchange","${auditExchangeName(exchange)}"`));
          else assert.doesNotMatch(value, /x-dead-letter-exchange/);
        }
      });
    }

    it('refuses a query without the publish token, and bad parameters', async () => {
      assert.equal((await missed(gw.url, '', 'wrong-token-0123456789abcdef')).status, 401);
      const bad = await missed(gw.url, 'limit=0');
      assert.equal(bad.status, 400);
      assert.equal(bad.json.code, 'INVALID_REQUEST');
      assert.equal((await missed(gw.url, 'limit=1001')).status, 400);
      assert.equal((await missed(gw.url, 'channel=nope')).json.code, 'INVALID_CHANNEL');
      assert.equal((await missed(gw.url, 'consumer=a:b')).json.code, 'INVALID_CONSUMER_ID');
    });
  });
}

describe('audit off', () => {
  it('answers 404 at /_warren/missed without --audit-routes', async () => {
    const gw = await startGateway('memory');
    try {
      const res = await missed(gw.url, '');
      assert.equal(res.status, 404);
      assert.match(res.json.message, /--audit-routes/);
    } finally {
      await gw.close();
    }
  });
});

for (const kind of BROKERS) {
  describe(`what the audit does not see, on the ${kind} broker`, () => {
    const exchange = unique('audit-test-');
    const route = `/${unique('orders')}/`;
    const queues: string[] = [];

    after(async () => {
      if (kind !== 'rabbitmq') return;
      const conn = await amqp.connect(AMQP_URL);
      const ch = await conn.createChannel();
      for (const queue of queues) await ch.deleteQueue(queue);
      await ch.deleteQueue(auditInboxName(exchange));
      await ch.deleteQueue(auditLogName(exchange));
      await ch.deleteExchange(auditExchangeName(exchange));
      await ch.deleteExchange(exchange);
      await conn.close();
    });

    it('a queue that expires as a whole (x-expires) takes its messages with it, unaudited', async () => {
      const gw = await startGateway(kind, { exchange, auditRoutes: route, queueMaxLength: 5, queueExpiresMs: 1000 });
      try {
        const channel = `${route}expiring`;
        const consumer = unique('gone-');
        queues.push(consumerQueueName(consumer, channel));
        assert.equal((await poll(gw.url, channel, { consumerId: consumer, timeout: 0 })).status, 204);
        for (let i = 1; i <= 3; i++) assert.equal((await httpPublish(gw.url, channel, `kept ${i}`)).status, 200);
        if (kind === 'rabbitmq') {
          await until(async () => !(await queueArguments(consumerQueueName(consumer, channel))).size, 'the queue to expire', 15_000, 250);
        } else {
          await new Promise((r) => setTimeout(r, 1500));
        }
        // Published again: nothing is bound for this consumer any more, so nothing is dropped either.
        const page = await missed(gw.url, new URLSearchParams({ consumer }).toString());
        assert.equal(page.status, 200);
        assert.deepEqual(page.json.missed, []);
      } finally {
        await gw.close();
      }
    });

    if (kind === 'rabbitmq') {
      it('a queue declared before its route was audited keeps working, unaudited (its arguments cannot change)', async () => {
        const channel = `${route}older`;
        const consumer = unique('older-');
        const queue = consumerQueueName(consumer, channel);
        queues.push(queue);
        const before = await startGateway(kind, { exchange, queueMaxLength: 5 });
        try {
          assert.equal((await poll(before.url, channel, { consumerId: consumer, timeout: 0 })).status, 204);
        } finally {
          await before.close();
        }
        const gw = await startGateway(kind, { exchange, auditRoutes: route, queueMaxLength: 5 });
        try {
          // Declared again with the dead-letter exchange: PRECONDITION_FAILED, and the queue is used as it is.
          assert.equal((await poll(gw.url, channel, { consumerId: consumer, timeout: 0 })).status, 204);
          assert.doesNotMatch((await queueArguments(queue)).get(queue) ?? '', /x-dead-letter-exchange/);
          for (let i = 1; i <= 7; i++) assert.equal((await httpPublish(gw.url, channel, `m ${i}`)).status, 200);
          const got = await poll(gw.url, channel, { consumerId: consumer, timeout: 0 });
          assert.equal(got.body, 'm 3');
          const page = await missed(gw.url, new URLSearchParams({ consumer }).toString());
          assert.deepEqual(page.json.missed, []);
        } finally {
          await gw.close();
        }
      });
    }
  });
}
