import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { BROKERS, httpPublish, rabbitQueues, rawRequest, startGateway, TOKEN, unique, type TestGateway } from './support/index.js';

/** Sends raw bytes and returns the raw answer (for requests no client library would send). */
function rawExchange(base: string, bytes: string): Promise<string> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname);
    let answer = '';
    socket.on('data', (c: Buffer) => (answer += c.toString('latin1')));
    socket.on('end', () => resolve(answer));
    socket.on('close', () => resolve(answer));
    socket.on('error', reject);
    socket.end(bytes);
  });
}

function jsonError(body: string): { code: string; message: string } {
  const parsed = JSON.parse(body) as { code: string; message: string };
  assert.equal(typeof parsed.message, 'string');
  assert.ok(parsed.message.length > 0);
  return parsed;
}

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

    const badChannels: Array<[string, string]> = [
      ['/', 'root'],
      ['//greetings', 'empty segment'],
      ['/greetings/', 'trailing slash'],
      ['/a/../b', 'dot-dot segment'],
      ['/a/./b', 'dot segment'],
      ['/..', 'bare dot-dot'],
      ['/a*', 'AMQP wildcard *'],
      ['/a%23b', 'percent-encoded #'],
      ['/%2e%2e', 'percent-encoded dot-dot'],
      ['/caf%C3%A9', 'non-ASCII'],
      ['/a:b', 'colon'],
      [`/${'x'.repeat(128)}`, 'longer than 128'],
      ['/_private', 'reserved first segment'],
    ];
    for (const [path, why] of badChannels) {
      it(`refuses channel ${path.length > 30 ? `${path.slice(0, 30)}…` : path} (${why}) with 400 INVALID_CHANNEL`, async () => {
        const res = await rawRequest(gw.url, `${path}?timeout=0`, { headers: { 'consumer-id': consumerId } });
        assert.equal(res.status, 400);
        assert.equal(jsonError(res.body).code, 'INVALID_CHANNEL');
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
        const res = await rawRequest(gw.url, '/greetings', { method, headers: { 'consumer-id': consumerId, 'content-length': method === 'DELETE' ? '0' : '1' }, body: method === 'DELETE' ? '' : 'x' });
        assert.equal(res.status, 405);
        assert.equal(jsonError(res.body).code, 'METHOD_NOT_ALLOWED');
      });
    }

    it('answers unknown gateway endpoints with 404 and wrong methods on them with 405 and Allow', async () => {
      const missing = await rawRequest(gw.url, '/_warren/nope');
      assert.equal(missing.status, 404);
      assert.equal(jsonError(missing.body).code, 'NOT_FOUND');
      const wrong = await rawRequest(gw.url, '/_warren/publish?channel=/a', { method: 'GET', headers: { authorization: `Bearer ${TOKEN}` } });
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
      const expect = await rawExchange(gw.url, 'POST /_warren/publish?channel=/a HTTP/1.1\r\nHost: x\r\nExpect: banana\r\nContent-Length: 1\r\nConnection: close\r\n\r\n');
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

  describe(`the publish endpoint on the ${kind} broker`, () => {
    let gw: TestGateway;
    before(async () => {
      gw = await startGateway(kind, { maxMessageBytes: 1024 });
    });
    after(() => gw.close());

    const publish = (headers: Record<string, string>, body = 'x', query = 'channel=/greetings') =>
      rawRequest(gw.url, `/_warren/publish?${query}`, { method: 'POST', headers, body });

    it('requires the bearer token: 401 UNAUTHORIZED without it or with a wrong one', async () => {
      const attempts: Array<Record<string, string>> = [{}, { authorization: 'Bearer wrong-token-0123456789' }, { authorization: TOKEN }, { authorization: `Basic ${TOKEN}` }];
      for (const headers of attempts) {
        const res = await publish(headers);
        assert.equal(res.status, 401);
        assert.equal(jsonError(res.body).code, 'UNAUTHORIZED');
        assert.equal(res.headers['www-authenticate'], 'Bearer realm="warren"');
      }
    });

    it('refuses requests with browser headers (Origin, Sec-Fetch-*) even with the token: 403 FORBIDDEN_FROM_BROWSER', async () => {
      const browsers: Array<Record<string, string>> = [{ origin: 'http://localhost:4000' }, { 'sec-fetch-site': 'same-origin' }, { 'sec-fetch-dest': 'empty' }, { 'sec-fetch-user': '?1' }];
      for (const extra of browsers) {
        const res = await publish({ authorization: `Bearer ${TOKEN}`, ...extra });
        assert.equal(res.status, 403);
        assert.equal(jsonError(res.body).code, 'FORBIDDEN_FROM_BROWSER');
      }
    });

    it('accepts a backend publishing with fetch (which sends Sec-Fetch-Mode, but no Origin or Sec-Fetch-Site)', async () => {
      const res = await fetch(`${gw.url}/_warren/publish?channel=/from-fetch`, { method: 'POST', body: 'x', headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(res.status, 200, await res.text());
    });

    it('answers a body over the limit with 413 MESSAGE_TOO_LARGE, declared or streamed', async () => {
      const declared = await publish({ authorization: `Bearer ${TOKEN}` }, 'x'.repeat(1025));
      assert.equal(declared.status, 413);
      assert.equal(jsonError(declared.body).code, 'MESSAGE_TOO_LARGE');
      const chunked = await rawExchange(
        gw.url,
        `POST /_warren/publish?channel=/greetings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n${'a'.repeat(1024)}\r\n1\r\nb\r\n0\r\n\r\n`,
      );
      assert.match(chunked, /^HTTP\/1\.1 413 /);
      const exact = await publish({ authorization: `Bearer ${TOKEN}` }, 'x'.repeat(1024));
      assert.equal(exact.status, 200);
    });

    it('checks channels, message id, event name and content type', async () => {
      const auth = { authorization: `Bearer ${TOKEN}` };
      const cases: Array<[Record<string, string>, string, string]> = [
        [auth, '', 'INVALID_CHANNEL'],
        [auth, 'channel=/a/../b', 'INVALID_CHANNEL'],
        [auth, 'channel=/ok&channel=nope', 'INVALID_CHANNEL'],
        [auth, Array.from({ length: 33 }, (_, i) => `channel=/c${i}`).join('&'), 'INVALID_CHANNEL'],
        [{ ...auth, 'message-id': 'has space' }, 'channel=/ok', 'INVALID_MESSAGE_ID'],
        [{ ...auth, 'message-id': 'x'.repeat(129) }, 'channel=/ok', 'INVALID_MESSAGE_ID'],
        [{ ...auth, 'warren-event': '1starts-with-digit' }, 'channel=/ok', 'INVALID_EVENT_NAME'],
        [{ ...auth, 'content-type': 'not a type' }, 'channel=/ok', 'INVALID_CONTENT_TYPE'],
      ];
      for (const [headers, query, code] of cases) {
        const res = await publish(headers, 'x', query);
        assert.equal(res.status, 400, `${query} ${JSON.stringify(headers)}`);
        assert.equal(jsonError(res.body).code, code);
      }
    });

    it('publishes to several channels at once and reports the id', async () => {
      const res = await httpPublish(gw.url, ['/multi-a', '/multi-b', '/multi-a'], 'both', { 'message-id': 'multi-1' });
      assert.equal(res.status, 200);
      assert.deepEqual(res.json, { id: 'multi-1', channels: ['/multi-a', '/multi-b'] });
    });

    it('is off (403 PUBLISH_DISABLED) on a gateway started without a token', async () => {
      const bare = await startGateway(kind, { publishToken: undefined });
      try {
        const res = await rawRequest(bare.url, '/_warren/publish?channel=/a', { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: 'x' });
        assert.equal(res.status, 403);
        assert.equal(jsonError(res.body).code, 'PUBLISH_DISABLED');
      } finally {
        await bare.close();
      }
    });

    it('guards /_warren/stats with the same token', async () => {
      assert.equal((await rawRequest(gw.url, '/_warren/stats')).status, 401);
      const ok = await rawRequest(gw.url, '/_warren/stats', { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(ok.status, 200);
      assert.equal(JSON.parse(ok.body).broker.kind, kind);
    });
  });
}
