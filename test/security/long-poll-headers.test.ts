import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { httpPublish, rawRequest, startGateway, unique, type TestGateway } from '../support/index.js';

describe("long-poll answers carry a publisher's bytes: the browser must not run them", () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway('memory');
  });
  after(() => gw.close());

  it('a message published as text/html comes with nosniff and a sandbox CSP, and so does a 204', async () => {
    const channel = `/${unique('html-')}`;
    const consumer = unique('c-');
    assert.equal((await rawRequest(gw.url, `${channel}?timeout=0`, { headers: { 'consumer-id': consumer } })).status, 204);
    assert.equal(
      (await httpPublish(gw.url, channel, '<script>alert(document.cookie)</script>', { 'content-type': 'text/html' })).status,
      200,
    );
    const res = await rawRequest(gw.url, `${channel}?timeout=5`, { headers: { 'consumer-id': consumer } });
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'text/html');
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
    assert.equal(res.headers['content-security-policy'], 'sandbox');
    const empty = await rawRequest(gw.url, `${channel}?timeout=0`, { headers: { 'consumer-id': consumer } });
    assert.equal(empty.status, 204);
    assert.equal(empty.headers['x-content-type-options'], 'nosniff');
  });
});
