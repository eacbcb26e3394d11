import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { normalizeOptions } from '@warren/gateway';
import { rawRequest, readSse, startGateway, TOKEN, unique, type TestGateway } from './support/index.js';

describe('CORS for cross-origin pages', () => {
  let gw: TestGateway;
  const page = 'http://localhost:5173';
  before(async () => {
    gw = await startGateway('memory', { corsOrigins: `${page}, https://app.example.com` });
  });
  after(() => gw.close());

  it('grants an allowed origin, with credentials, on long-poll and SSE', async () => {
    const res = await rawRequest(gw.url, `/${unique('c-')}?timeout=0`, { headers: { origin: page } });
    assert.equal(res.status, 204);
    assert.equal(res.headers['access-control-allow-origin'], page);
    assert.equal(res.headers['access-control-allow-credentials'], 'true');
    assert.match(String(res.headers['access-control-expose-headers']), /consumer-id/);
    assert.match(String(res.headers.vary), /Origin/);
    const sse = readSse(gw.url, `/${unique('c-')}`, { origin: 'https://app.example.com' });
    assert.equal((await sse.headers)['access-control-allow-origin'], 'https://app.example.com');
    sse.close();
  });

  it("an SSE stream's head carries the grant and its request id, opened or refused", async () => {
    const sse = readSse(gw.url, `/${unique('c-')}`, { origin: page });
    const head = await sse.headers;
    assert.equal(head['access-control-allow-origin'], page);
    assert.equal(head['access-control-allow-credentials'], 'true');
    assert.match(String(head.vary), /Origin/);
    assert.match(String(head['x-request-id']), /^[0-9a-f-]{36}$/);
    sse.close();
    const refused = await rawRequest(gw.url, `/${unique('c-')}?consumer_id=${encodeURIComponent('not valid!')}`, {
      headers: { origin: page, accept: 'text/event-stream' },
    });
    assert.equal(refused.status, 400);
    assert.equal(refused.headers['access-control-allow-origin'], page);
    assert.match(String(refused.headers.vary), /Origin/);
    assert.match(String(refused.headers['x-request-id']), /^[0-9a-f-]{36}$/);
  });

  it('answers a preflight for the Consumer-Id and Last-Event-ID headers', async () => {
    const res = await rawRequest(gw.url, '/greetings', {
      method: 'OPTIONS',
      headers: { origin: page, 'access-control-request-method': 'GET', 'access-control-request-headers': 'consumer-id, last-event-id' },
    });
    assert.equal(res.status, 204);
    assert.equal(res.headers['access-control-allow-origin'], page);
    assert.equal(res.headers['access-control-allow-methods'], 'GET');
    assert.equal(res.headers['access-control-allow-headers'], 'consumer-id, last-event-id');
  });

  it('grants nothing to other origins, and never to the publish endpoint', async () => {
    const other = await rawRequest(gw.url, `/${unique('c-')}?timeout=0`, { headers: { origin: 'https://evil.example' } });
    assert.equal(other.status, 204);
    assert.equal(other.headers['access-control-allow-origin'], undefined);
    const preflight = await rawRequest(gw.url, '/greetings', { method: 'OPTIONS', headers: { origin: 'https://evil.example' } });
    assert.equal(preflight.headers['access-control-allow-origin'], undefined);
    const publish = await rawRequest(gw.url, '/_warren/publish?channel=/a', {
      method: 'OPTIONS',
      headers: { origin: page, authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(publish.status, 405);
    assert.equal(publish.headers['access-control-allow-origin'], undefined);
  });

  it('"*" grants any origin without credentials; malformed origins are refused at start', async () => {
    const any = await startGateway('memory', { corsOrigins: '*' });
    try {
      const res = await rawRequest(any.url, `/${unique('c-')}?timeout=0`, { headers: { origin: 'https://anyone.example' } });
      assert.equal(res.headers['access-control-allow-origin'], '*');
      assert.equal(res.headers['access-control-allow-credentials'], undefined);
    } finally {
      await any.close();
    }
    assert.throws(() => normalizeOptions({ corsOrigins: 'http://x.example/path' }), /an origin is scheme:\/\/host\[:port\]/);
    assert.throws(() => normalizeOptions({ corsOrigins: 'not an origin' }), /not an origin/);
  });
});
