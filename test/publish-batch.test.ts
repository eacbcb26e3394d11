// Publishing over HTTP at scale (issue 17 item 2): a batch of messages in one
// request, and pipelined single publishes on one connection handled at once.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import amqp from 'amqplib';
import { Producer } from '@warren/producer';
import { consumerQueueName, type WarrenMessage } from '@warren/protocol';
import { AMQP_URL, BROKERS, jsonError, poll, rawRequest, startGateway, TOKEN, unique, until, type TestGateway } from './support/index.js';

const NDJSON = 'application/x-ndjson';

/** POSTs `lines` (each JSON-encoded unless already a string) as a batch. */
function batch(gw: TestGateway, lines: unknown[], headers: Record<string, string> = {}) {
  const body = lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n';
  return rawRequest(gw.url, '/_warren/publish/batch', {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': NDJSON, ...headers },
    body,
  });
}

/** Writes `requests` on one socket at once and reads the answers in order (status and JSON body each). */
function pipelined(base: string, requests: string[]): Promise<Array<{ status: number; json: any }>> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname);
    const answers: Array<{ status: number; json: any }> = [];
    let buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        const end = buffer.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buffer.subarray(0, end).toString('latin1');
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? NaN);
        if (!Number.isFinite(length)) return reject(new Error(`no content-length in ${head}`));
        if (buffer.length < end + 4 + length) return;
        const body = buffer.subarray(end + 4, end + 4 + length).toString('utf8');
        buffer = buffer.subarray(end + 4 + length);
        answers.push({ status: Number(head.split(' ')[1]), json: JSON.parse(body) });
        if (answers.length === requests.length) {
          socket.destroy();
          resolve(answers);
        }
      }
    });
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`closed after ${answers.length} of ${requests.length} answers`)));
    socket.write(requests.join(''));
  });
}

const publishRequest = (channel: string, id: string, body: string): string =>
  `POST /_warren/publish?channel=${encodeURIComponent(channel)} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n` +
  `Content-Type: text/plain\r\nMessage-Id: ${id}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

for (const kind of BROKERS) {
  describe(`publishing over HTTP at scale, ${kind} broker`, () => {
    let gw: TestGateway;
    const queues: string[] = [];
    const consume = async (channel: string): Promise<string> => {
      const consumerId = unique('c-');
      queues.push(consumerQueueName(consumerId, channel));
      await poll(gw.url, channel, { consumerId, timeout: 0 });
      return consumerId;
    };
    before(async () => {
      gw = await startGateway(kind, { maxMessageBytes: 1024, publishBatchMaxMessages: 50, publishBatchMaxBytes: 16 * 1024 });
      await until(() => gw.gateway.broker.ready, 'the broker is connected');
    });
    after(async () => {
      await gw.close();
      if (kind === 'rabbitmq') {
        const conn = await amqp.connect(AMQP_URL);
        const ch = await conn.createChannel();
        for (const queue of queues) await ch.deleteQueue(queue);
        await conn.close();
      }
    });

    it('a batch publishes every message in order, each answered with its routing', async () => {
      const heard = `/${unique('batch-')}`;
      const nobody = `/${unique('batch-none-')}`;
      const consumerId = await consume(heard);
      const res = await batch(gw, [
        { channel: heard, data: 'one', id: 'b-1' },
        { channels: [heard, nobody], data: { n: 2 }, event: 'tick' },
        '',
        { channel: nobody, data: 'three' },
        { channel: heard, data: 'AAECfw==', encoding: 'base64', id: 'b-4' },
        { channel: heard, data: '<b>5</b>', contentType: 'text/html; charset=utf-8' },
      ]);
      assert.equal(res.status, 200, res.body);
      const { results, failed } = JSON.parse(res.body);
      assert.equal(failed, 0);
      assert.equal(results.length, 5);
      // The embedded broker counts the queues too (without --management-url, RabbitMQ does not).
      const count = (routes: Record<string, number>) =>
        kind === 'memory' ? { queues: Object.values(routes).reduce((a, b) => a + b, 0), routes } : {};
      assert.deepEqual(results[0], { id: 'b-1', channels: [heard], routed: true, unrouted: [], ...count({ [heard]: 1 }) });
      assert.deepEqual(results[1].channels, [heard, nobody]);
      assert.equal(results[1].routed, true);
      assert.deepEqual(results[1].unrouted, [nobody]);
      assert.deepEqual(results[2].routed, false);
      assert.deepEqual(results[2].unrouted, [nobody]);
      assert.equal(results[3].id, 'b-4');

      const got = [];
      for (let i = 0; i < 4; i++) got.push(await poll(gw.url, heard, { consumerId, timeout: 2 }));
      assert.deepEqual(
        got.map((r) => [r.body, r.headers['content-type'], r.headers['message-id']]),
        [
          ['one', 'text/plain; charset=utf-8', 'b-1'],
          ['{"n":2}', 'application/json', results[1].id],
          [Buffer.from([0, 1, 2, 127]).toString(), 'application/octet-stream', 'b-4'],
          ['<b>5</b>', 'text/html; charset=utf-8', results[4].id],
        ].map(([body, type, id]) => [body, type, id]),
      );
      assert.equal(got[1]!.headers['warren-event'], 'tick');
    });

    it('refuses a bad batch whole, with a stable code that names the line; nothing of it is published', async () => {
      const channel = `/${unique('refused-')}`;
      const consumerId = await consume(channel);
      const ok = { channel, data: 'must not arrive' };
      const cases: Array<[unknown[], Record<string, string>, number, string, RegExp]> = [
        [[ok], { 'content-type': 'text/plain' }, 400, 'INVALID_BATCH', /x-ndjson/],
        [[ok, '{"channel": '], {}, 400, 'INVALID_BATCH', /^line 2: not JSON/],
        [[ok, '[1]'], {}, 400, 'INVALID_BATCH', /^line 2: not a JSON object/],
        [[ok, { chanel: channel, data: 1 }], {}, 400, 'INVALID_BATCH', /^line 2: unknown field "chanel"/],
        [[ok, { channel, channels: [channel], data: 1 }], {}, 400, 'INVALID_BATCH', /^line 2: give either/],
        [[ok, { channel }], {}, 400, 'INVALID_BATCH', /^line 2: no "data"/],
        [[ok, { channel, data: 'x', id: 7 }], {}, 400, 'INVALID_BATCH', /^line 2: "id" must be a string/],
        [[ok, { channel, data: '!!', encoding: 'base64' }], {}, 400, 'INVALID_BATCH', /^line 2: "data" is not base64/],
        [[ok, { channel, data: 'x', encoding: 'hex' }], {}, 400, 'INVALID_BATCH', /^line 2: "encoding"/],
        [[ok, { channel: 'no-slash', data: 'x' }], {}, 400, 'INVALID_CHANNEL', /^line 2: /],
        [[ok, { channels: [], data: 'x' }], {}, 400, 'INVALID_CHANNEL', /^line 2: /],
        [[ok, { channel, data: 'x', id: 'has space' }], {}, 400, 'INVALID_MESSAGE_ID', /^line 2: /],
        [[ok, { channel, data: 'x', event: '1bad' }], {}, 400, 'INVALID_EVENT_NAME', /^line 2: /],
        [[ok, { channel, data: 'x'.repeat(1025) }], {}, 413, 'MESSAGE_TOO_LARGE', /^line 2: /],
        [Array.from({ length: 51 }, () => ok), {}, 413, 'BATCH_TOO_LARGE', /at most 50 messages/],
        [Array.from({ length: 20 }, () => ({ channel, data: 'y'.repeat(1000) })), {}, 413, 'BATCH_TOO_LARGE', /bytes/],
        [[''], {}, 400, 'INVALID_BATCH', /no message/],
        [[ok], { authorization: 'Bearer wrong-token-0123456789' }, 401, 'UNAUTHORIZED', /token/],
      ];
      for (const [lines, headers, status, code, message] of cases) {
        const res = await batch(gw, lines, headers);
        assert.equal(res.status, status, `${code}: ${res.body}`);
        const error = jsonError(res.body);
        assert.equal(error.code, code);
        assert.match(error.message, message);
      }
      assert.equal((await poll(gw.url, channel, { consumerId, timeout: 0.5 })).status, 204, 'no message of a refused batch arrived');
    });

    it('a batch names at most 32 channels a message, and only POST', async () => {
      const res = await batch(gw, [{ channels: Array.from({ length: 33 }, (_, i) => `/c${i}`), data: 'x' }]);
      assert.equal(res.status, 400);
      assert.equal(jsonError(res.body).code, 'INVALID_CHANNEL');
      const get = await rawRequest(gw.url, '/_warren/publish/batch', { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(get.status, 405);
      assert.equal(get.headers.allow, 'POST');
    });

    it('pipelined publishes on one connection wait for their confirms together, answered in request order', async () => {
      const channel = `/${unique('pipe-')}`;
      const consumerId = await consume(channel);
      const K = 12;
      // Hold every publish until K are waiting at once: one request at a time would never get there.
      const broker = gw.gateway.broker;
      const original = broker.publish;
      let waiting = 0;
      let most = 0;
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let timedOut = false;
      const fallback = setTimeout(() => {
        timedOut = true;
        release();
      }, 3000);
      broker.publish = async (ch: string, message: WarrenMessage) => {
        most = Math.max(most, ++waiting);
        if (waiting === K) release();
        await gate;
        waiting--;
        return original.call(broker, ch, message);
      };
      try {
        const answers = await pipelined(
          gw.url,
          Array.from({ length: K }, (_, i) => publishRequest(channel, `p-${i}`, `m${i}`)),
        );
        assert.equal(timedOut, false, `only ${most} of ${K} publishes were waiting at once`);
        assert.equal(most, K);
        assert.deepEqual(
          answers.map((a) => [a.status, a.json.id, a.json.routed]),
          Array.from({ length: K }, (_, i) => [200, `p-${i}`, true]),
        );
      } finally {
        clearTimeout(fallback);
        broker.publish = original;
      }
      for (let i = 0; i < K; i++) assert.equal((await poll(gw.url, channel, { consumerId, timeout: 2 })).body, `m${i}`);
    });

    it('the producer SDK over HTTP keeps more publishes in flight than it has connections (it pipelines)', async () => {
      const channel = `/${unique('sdk-pipe-')}`;
      const K = 24; // more than its 8 connections
      const broker = gw.gateway.broker;
      const original = broker.publish;
      let waiting = 0;
      let most = 0;
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let timedOut = false;
      const fallback = setTimeout(() => {
        timedOut = true;
        release();
      }, 3000);
      broker.publish = async (ch: string, message: WarrenMessage) => {
        most = Math.max(most, ++waiting);
        if (waiting === K) release();
        await gate;
        waiting--;
        return original.call(broker, ch, message);
      };
      const producer = new Producer({ url: gw.url, token: TOKEN });
      try {
        const results = await Promise.all(Array.from({ length: K }, (_, i) => producer.publish(`s${i}`, { id: `s-${i}` }).to(channel)));
        assert.equal(timedOut, false, `only ${most} of ${K} publishes were waiting at once`);
        assert.equal(most, K);
        assert.deepEqual(
          results.map((r) => r.id),
          Array.from({ length: K }, (_, i) => `s-${i}`),
        );
      } finally {
        clearTimeout(fallback);
        broker.publish = original;
        await producer.close();
      }
    });
  });
}
