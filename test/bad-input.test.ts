import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  BROKERS,
  rabbitQueues,
  rawRequest,
  startGateway,
  TOKEN,
  unique,
  type TestGateway,
  rawExchange,
  jsonError,
} from './support/index.js';

for (const kind of BROKERS) {
  describe(`bad input on the ${kind} broker`, () => {
    let gw: TestGateway;
    // Every rejected request below carries this consumer id (or this prefix):
    // none of them may create a queue.
    const consumerId = unique('bad-');
    before(async () => {
      gw = await startGateway(kind);
    });
    after(() => gw.close());

    const badChannels: Array<[string, string, code?: string]> = [
      ['/', 'root'],
      ['//greetings', 'empty segment'],
      ['/greetings/', 'trailing slash'],
      ['/a/../b', 'dot-dot segment'],
      ['/a/./b', 'dot segment'],
      ['/..', 'bare dot-dot'],
      // A `*` that is not a whole last segment is a malformed pattern (docs/wildcards.md).
      ['/a*', 'AMQP wildcard *', 'INVALID_PATTERN'],
      ['/a%23b', 'percent-encoded #'],
      ['/%2e%2e', 'percent-encoded dot-dot'],
      ['/caf%C3%A9', 'non-ASCII'],
      ['/a:b', 'colon'],
      [`/${'x'.repeat(128)}`, 'longer than 128'],
      ['/_private', 'reserved first segment'],
    ];
    for (const [path, why, code = 'INVALID_CHANNEL'] of badChannels) {
      it(`refuses channel ${path.length > 30 ? `${path.slice(0, 30)}…` : path} (${why}) with 400 ${code}`, async () => {
        const res = await rawRequest(gw.url, `${path}?timeout=0`, { headers: { 'consumer-id': consumerId } });
        assert.equal(res.status, 400);
        assert.equal(jsonError(res.body).code, code);
        assert.match(String(res.headers['content-type']), /^application\/json/);
      });
    }

    it('accepts the longest allowed channel (128 characters)', async () => {
      const res = await rawRequest(gw.url, `/${'y'.repeat(127)}?timeout=0`, { headers: { 'consumer-id': unique('ok-') } });
      assert.equal(res.status, 204);
    });

    for (const [value, why] of [
      ['has space', 'space'],
      ['a'.repeat(65), 'too long'],
      ['semi;colon', 'punctuation'],
      ['dot.ted', 'dot'],
    ] as const) {
      it(`refuses Consumer-Id "${value.slice(0, 20)}" (${why}) with 400 INVALID_CONSUMER_ID`, async () => {
        const res = await rawRequest(gw.url, '/greetings?timeout=0', { headers: { 'consumer-id': value } });
        assert.equal(res.status, 400);
        assert.equal(jsonError(res.body).code, 'INVALID_CONSUMER_ID');
      });
    }

    it('refuses a bad consumer_id query parameter, and ignores a bad cookie', async () => {
      const byQuery = await rawRequest(gw.url, '/greetings?timeout=0&consumer_id=%3Cscript%3E');
      assert.equal(byQuery.status, 400);
      assert.equal(jsonError(byQuery.body).code, 'INVALID_CONSUMER_ID');
      const byCookie = await rawRequest(gw.url, `/${unique('ch-')}?timeout=0`, { headers: { cookie: 'warren_consumer_id=<bad>' } });
      assert.equal(byCookie.status, 204);
      assert.match(String(byCookie.headers['consumer-id']), /^c_/);
    });

    for (const value of ['abc', '-1', '1e3', '99999', '']) {
      it(`refuses ?timeout=${value} with 400 INVALID_TIMEOUT`, async () => {
        const res = await rawRequest(gw.url, `/greetings?timeout=${value}`, { headers: { 'consumer-id': consumerId } });
        assert.equal(res.status, 400);
        assert.equal(jsonError(res.body).code, 'INVALID_TIMEOUT');
      });
    }

    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      it(`answers ${method} on a channel with 405 METHOD_NOT_ALLOWED`, async () => {
        const res = await rawRequest(gw.url, '/greetings', {
          method,
          headers: { 'consumer-id': consumerId, 'content-length': method === 'DELETE' ? '0' : '1' },
          body: method === 'DELETE' ? '' : 'x',
        });
        assert.equal(res.status, 405);
        assert.equal(jsonError(res.body).code, 'METHOD_NOT_ALLOWED');
      });
    }

    it('answers unknown gateway endpoints with 404 and wrong methods on them with 405 and Allow', async () => {
      const missing = await rawRequest(gw.url, '/_warren/nope');
      assert.equal(missing.status, 404);
      assert.equal(jsonError(missing.body).code, 'NOT_FOUND');
      const wrong = await rawRequest(gw.url, '/_warren/publish?channel=/a', {
        method: 'GET',
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      assert.equal(wrong.status, 405);
      assert.equal(wrong.headers.allow, 'POST');
    });

    it('answers a channel 405 with Allow: GET', async () => {
      const res = await rawRequest(gw.url, '/greetings', { method: 'POST', headers: { 'content-length': '1' }, body: 'x' });
      assert.equal(res.status, 405);
      assert.equal(res.headers.allow, 'GET, OPTIONS');
    });

    it('answers what Node would refuse with an empty body (no Host, odd Expect, CONNECT) with coded JSON', async () => {
      const noHost = await rawExchange(gw.url, 'GET /greetings?timeout=0 HTTP/1.1\r\nConsumer-Id: x\r\n\r\n');
      assert.match(noHost, /^HTTP\/1\.1 400 /);
      assert.match(noHost, /"code":"INVALID_REQUEST"/);
      const expect = await rawExchange(
        gw.url,
        'POST /_warren/publish?channel=/a HTTP/1.1\r\nHost: x\r\nExpect: banana\r\nContent-Length: 1\r\nConnection: close\r\n\r\n',
      );
      assert.match(expect, /^HTTP\/1\.1 417 /);
      assert.match(expect, /"code":"EXPECTATION_FAILED"/);
      const connectRes = await rawExchange(gw.url, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
      assert.match(connectRes, /^HTTP\/1\.1 405 /);
      assert.match(connectRes, /"code":"METHOD_NOT_ALLOWED"/);
    });

    it('answers a URL over 2048 characters with 414 URI_TOO_LONG', async () => {
      const res = await rawRequest(gw.url, `/greetings?pad=${'p'.repeat(2100)}`, { headers: { 'consumer-id': consumerId } });
      assert.equal(res.status, 414);
      assert.equal(jsonError(res.body).code, 'URI_TOO_LONG');
    });

    it('answers oversized headers with 431 HEADERS_TOO_LARGE and garbage with 400 INVALID_REQUEST', async () => {
      const big = await rawExchange(gw.url, `GET /greetings HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(20_000)}\r\n\r\n`);
      assert.match(big, /^HTTP\/1\.1 431 /);
      assert.match(big, /"code":"HEADERS_TOO_LARGE"/);
      const garbage = await rawExchange(gw.url, 'HELLO THERE\r\n\r\n');
      assert.match(garbage, /^HTTP\/1\.1 400 /);
      assert.match(garbage, /"code":"INVALID_REQUEST"/);
      const absolute = await rawExchange(gw.url, 'GET http://evil.example/greetings HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.match(absolute, /^HTTP\/1\.1 400 /);
    });

    it('created no queue for any rejected request, and still serves', async () => {
      const stats = gw.gateway.stats();
      // Only the one accepted request above that named a consumer declared a queue
      // (a bad cookie is replaced by a minted id, and a minted id gets no queue).
      assert.equal(stats.broker.queueDeclares, 1);
      if (kind === 'rabbitmq') assert.deepEqual(await rabbitQueues(`warren:${consumerId}`), []);
      const health = await rawRequest(gw.url, '/_warren/health');
      assert.equal(health.status, 200);
    });
  });
}
