import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BROKERS, httpPublish, rawRequest, startGateway, TOKEN, type TestGateway, rawExchange, jsonError } from './support/index.js';

for (const kind of BROKERS) {
  describe(`the publish endpoint on the ${kind} broker`, () => {
    let gw: TestGateway;
    before(async () => {
      gw = await startGateway(kind, { maxMessageBytes: 1024 });
    });
    after(() => gw.close());

    const publish = (headers: Record<string, string>, body = 'x', query = 'channel=/greetings') =>
      rawRequest(gw.url, `/_warren/publish?${query}`, { method: 'POST', headers, body });

    it('requires the bearer token: 401 UNAUTHORIZED without it or with a wrong one', async () => {
      const attempts: Array<Record<string, string>> = [
        {},
        { authorization: 'Bearer wrong-token-0123456789' },
        { authorization: TOKEN },
        { authorization: `Basic ${TOKEN}` },
      ];
      for (const headers of attempts) {
        const res = await publish(headers);
        assert.equal(res.status, 401);
        assert.equal(jsonError(res.body).code, 'UNAUTHORIZED');
        assert.equal(res.headers['www-authenticate'], 'Bearer realm="warren"');
      }
    });

    it('refuses requests with browser headers (Origin, Sec-Fetch-*) even with the token: 403 FORBIDDEN_FROM_BROWSER', async () => {
      const browsers: Array<Record<string, string>> = [
        { origin: 'http://localhost:4000' },
        { 'sec-fetch-site': 'same-origin' },
        { 'sec-fetch-dest': 'empty' },
        { 'sec-fetch-user': '?1' },
      ];
      for (const extra of browsers) {
        const res = await publish({ authorization: `Bearer ${TOKEN}`, ...extra });
        assert.equal(res.status, 403);
        assert.equal(jsonError(res.body).code, 'FORBIDDEN_FROM_BROWSER');
      }
    });

    it('accepts a backend publishing with fetch (which sends Sec-Fetch-Mode, but no Origin or Sec-Fetch-Site)', async () => {
      const res = await fetch(`${gw.url}/_warren/publish?channel=/from-fetch`, {
        method: 'POST',
        body: 'x',
        headers: { authorization: `Bearer ${TOKEN}` },
      });
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
      // The embedded broker counts the queues too (without --management-url, RabbitMQ does not).
      const count = kind === 'memory' ? { queues: 0, routes: { '/multi-a': 0, '/multi-b': 0 } } : {};
      assert.deepEqual(res.json, {
        id: 'multi-1',
        channels: ['/multi-a', '/multi-b'],
        routed: false,
        unrouted: ['/multi-a', '/multi-b'],
        ...count,
      });
    });

    it('is off (403 PUBLISH_DISABLED) on a gateway started without a token', async () => {
      const bare = await startGateway(kind, { publishToken: undefined });
      try {
        const res = await rawRequest(bare.url, '/_warren/publish?channel=/a', {
          method: 'POST',
          headers: { authorization: `Bearer ${TOKEN}` },
          body: 'x',
        });
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
