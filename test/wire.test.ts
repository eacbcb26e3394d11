import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import amqp from 'amqplib';
import { AMQP_URL, curl, poll, rabbitmqctl, startGateway, unique, until, type TestGateway } from './support/index.js';

describe('the documented AMQP wire layout', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway('rabbitmq');
  });
  after(() => gw.close());

  it('a message published with raw amqplib to the documented exchange reaches curl', async () => {
    const channel = `/${unique('raw-')}`;
    const consumerId = unique('curl-');
    // curl waits on the channel (its first poll declares the queue)...
    const received = curl(['-i', '-H', `Consumer-Id: ${consumerId}`, `${gw.url}${channel}?timeout=20`]);
    await until(() => gw.gateway.stats().broker.activeConsumers === 1, 'curl to be waiting');
    // ...and a plain AMQP client, not the SDK, publishes per docs/protocol.md "Wire layout".
    const conn = await amqp.connect(AMQP_URL);
    const ch = await conn.createConfirmChannel();
    await new Promise<void>((resolve, reject) =>
      ch.publish(
        'warren',
        channel,
        Buffer.from('from any AMQP client'),
        {
          messageId: 'raw-1',
          contentType: 'text/plain; charset=utf-8',
          type: 'raw-event',
          persistent: true,
        },
        (err: unknown) => (err ? reject(err) : resolve()),
      ),
    );
    await conn.close();
    const out = await received;
    assert.match(out, /^HTTP\/1\.1 200 OK/);
    assert.match(out, /\r\nmessage-id: raw-1\r\n/);
    assert.match(out, /\r\nwarren-event: raw-event\r\n/);
    assert.match(out, /\r\ncontent-type: text\/plain; charset=utf-8\r\n/);
    assert.ok(out.endsWith('\r\n\r\nfrom any AMQP client'));
  });

  it('gives a message without messageId or contentType an id and application/octet-stream', async () => {
    const channel = `/${unique('bare-')}`;
    const consumerId = unique('c-');
    await poll(gw.url, channel, { consumerId, timeout: 0 });
    const conn = await amqp.connect(AMQP_URL);
    const ch = await conn.createConfirmChannel();
    ch.publish('warren', channel, Buffer.from('bare'));
    await ch.waitForConfirms();
    await conn.close();
    const res = await poll(gw.url, channel, { consumerId, timeout: 2 });
    assert.equal(res.body, 'bare');
    assert.equal(res.headers['content-type'], 'application/octet-stream');
    assert.match(String(res.headers['message-id']), /^[0-9a-f-]{36}$/);
  });

  it("never lets a raw publisher's malformed properties reach HTTP headers", async () => {
    const channel = `/${unique('hostile-')}`;
    const consumerId = unique('c-');
    await poll(gw.url, channel, { consumerId, timeout: 0 });
    const conn = await amqp.connect(AMQP_URL);
    const ch = await conn.createConfirmChannel();
    ch.publish('warren', channel, Buffer.from('odd props'), {
      messageId: 'has space\r\nX-Injected: 1',
      contentType: 'text/plain; x=\u20ac\r\nSet-Cookie: a=b',
      type: 'evil\nevent',
    });
    await ch.waitForConfirms();
    await conn.close();
    const res = await poll(gw.url, channel, { consumerId, timeout: 2 });
    assert.equal(res.status, 200);
    assert.equal(res.body, 'odd props');
    assert.equal(res.headers['content-type'], 'application/octet-stream');
    assert.match(String(res.headers['message-id']), /^[0-9a-f-]{36}$/);
    assert.equal(res.headers['warren-event'], undefined);
    assert.equal(res.headers['x-injected'], undefined);
    assert.equal(res.headers['set-cookie'], undefined);
  });

  it('declares the queue and binding exactly as documented', async () => {
    const channel = `/${unique('layout-')}`;
    const consumerId = unique('c-');
    await poll(gw.url, channel, { consumerId, timeout: 0 });
    const queue = `warren:${consumerId}:${channel}`;
    const queues = await rabbitmqctl('list_queues', '-q', '--no-table-headers', 'name', 'durable', 'arguments');
    const line = queues.split('\n').find((l) => l.startsWith(`${queue}\t`));
    assert.ok(line, `queue ${queue} exists`);
    assert.match(line!, /\ttrue\t/);
    for (const arg of [
      '{"x-expires",300000}',
      '{"x-max-length",10000}',
      '{"x-overflow","drop-head"}',
      '{"x-single-active-consumer",true}',
    ]) {
      assert.ok(line!.includes(arg), `${arg} in ${line}`);
    }
    const bindings = await rabbitmqctl('list_bindings', '-q', '--no-table-headers', 'source_name', 'destination_name', 'routing_key');
    assert.ok(
      bindings.split('\n').some((l) => l === `warren\t${queue}\t${channel}`),
      'bound to exchange warren with the channel as key',
    );
    const exchanges = await rabbitmqctl('list_exchanges', '-q', '--no-table-headers', 'name', 'type', 'durable');
    assert.ok(exchanges.split('\n').some((l) => l === 'warren\tdirect\ttrue'));
  });
});

describe('a gateway whose exchange cannot be used', () => {
  it('does not crash: it logs, keeps retrying and answers 503', async () => {
    const lines: string[] = [];
    const { createLogger } = await import('@warren/gateway');
    // A missing exchange named amq.* cannot be declared (the prefix is RabbitMQ's own: 403).
    // (An existing exchange of another type is used as it is: test/wildcards.test.ts.)
    const gw = await startGateway('rabbitmq', {
      exchange: 'amq.warren-missing',
      reconnectMinMs: 50,
      reconnectMaxMs: 200,
      logger: createLogger('warn', (l) => lines.push(l)),
    });
    try {
      await until(() => lines.length >= 2, 'two failed attempts');
      assert.match(lines[0]!, /cannot use exchange \\"amq.warren-missing\\" as a durable direct exchange/);
      assert.equal(gw.gateway.broker.ready, false);
      const health = await poll(gw.url, '/_warren/health');
      assert.equal(health.status, 503);
      const res = await poll(gw.url, '/greetings', { consumerId: 'x', timeout: 0 });
      assert.equal(res.status, 503);
      assert.equal(JSON.parse(res.body).code, 'BROKER_UNAVAILABLE');
    } finally {
      await gw.close();
    }
  });
});
