import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { WebSocket } from 'ws';
import { createGateway, OPTION_SPECS, silentLogger } from '@warren/gateway';
import { BROKERS, httpPublish, poll, readSse, ROOT, startGateway, unique, until, type TestGateway } from './support/index.js';

/** One scrape: every sample by its series as printed (`name{label="v"}`), and the raw text. */
interface Scrape {
  status: number;
  contentType: string | undefined;
  text: string;
  samples: Map<string, number>;
}

async function scrape(base: string, path = '/metrics', method = 'GET'): Promise<Scrape> {
  const res = await request(`${base}${path}`, { method });
  const text = await res.body.text();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const cut = line.lastIndexOf(' ');
    samples.set(line.slice(0, cut), Number(line.slice(cut + 1)));
  }
  const type = res.headers['content-type'];
  return { status: res.statusCode, contentType: Array.isArray(type) ? type[0] : type, text, samples };
}

function sample(s: Scrape, series: string): number {
  const value = s.samples.get(series);
  assert.ok(value !== undefined, `${series} is not in the scrape`);
  return value;
}

/** `series` changed by exactly `by` between the two scrapes. */
function assertDelta(before: Scrape, after: Scrape, series: string, by: number): void {
  assert.equal(sample(after, series) - sample(before, series), by, `${series}: delta`);
}

const METRIC_NAMES = /^# TYPE (warren_\w+) (counter|gauge|histogram)$/gm;

for (const kind of BROKERS) {
  describe(`metrics on the ${kind} broker`, () => {
    let gw: TestGateway;
    let metricsUrl: string;
    before(async () => {
      gw = await startGateway(kind, { metricsPort: 0 });
      await until(() => gw.gateway.broker.ready, 'the broker to connect');
      const address = gw.gateway.metricsAddress();
      assert.ok(address !== undefined, 'listen() started the metrics listener');
      assert.equal(address.address, '127.0.0.1', 'the metrics listener binds to 127.0.0.1 by default');
      assert.notEqual(address.port, Number(new URL(gw.url).port));
      metricsUrl = `http://127.0.0.1:${address.port}`;
    });
    after(() => gw.close());

    it('serves GET /metrics in the Prometheus text format, with the default process metrics', async () => {
      const s = await scrape(metricsUrl);
      assert.equal(s.status, 200);
      assert.equal(s.contentType, 'text/plain; version=0.0.4; charset=utf-8');
      assert.equal(sample(s, 'warren_broker_ready'), 1);
      assert.ok(sample(s, 'nodejs_eventloop_lag_seconds') >= 0);
      assert.ok(sample(s, 'process_cpu_user_seconds_total') > 0);
      assert.match(s.text, /^# TYPE warren_broker_deliveries_total counter$/m);
      assert.match(s.text, /^# TYPE warren_connections gauge$/m);
      assert.equal((await scrape(metricsUrl, '/other')).status, 404);
      assert.equal((await scrape(metricsUrl, '/metrics', 'POST')).status, 405);
    });

    it('counts a known workload exactly: long-polls, an SSE stream, HTTP and library publishes', async () => {
      const before = await scrape(metricsUrl);
      const { gateway } = gw;

      // 3 long-polls that each take a waiting message, after one that finds the new queue empty.
      const pollChannel = `/${unique('metrics-poll-')}`;
      const consumerId = unique('metrics-c-');
      assert.equal((await poll(gw.url, pollChannel, { consumerId, timeout: 0 })).status, 204);
      for (let i = 0; i < 3; i++) await gateway.publish(pollChannel, `p${i}`);
      for (let i = 0; i < 3; i++) {
        const res = await poll(gw.url, pollChannel, { consumerId, timeout: 0 });
        assert.equal(res.status, 200);
        assert.equal(res.body, `p${i}`);
      }

      // One anonymous SSE stream receiving 5 messages: 2 published over HTTP, 3 with the library.
      const sseChannel = `/${unique('metrics-sse-')}`;
      const stream = readSse(gw.url, sseChannel);
      assert.equal(await stream.status, 200);
      await until(() => gateway.stats().fanOut.subscribers === 1, 'the stream to subscribe');
      const open = await scrape(metricsUrl);
      assert.equal(sample(open, 'warren_connections{transport="sse",kind="anonymous"}'), 1);
      assert.equal(sample(open, 'warren_connections{transport="sse",kind="identified"}'), 0);
      assert.equal(sample(open, 'warren_connections{transport="websocket",kind="anonymous"}'), 0);
      assert.equal(sample(open, 'warren_subscriptions{kind="anonymous"}'), 1);
      for (let i = 0; i < 2; i++) assert.equal((await httpPublish(gw.url, sseChannel, `h${i}`)).status, 200);
      for (let i = 0; i < 3; i++) await gateway.publish(sseChannel, `l${i}`);
      await until(() => stream.events.length === 5, 'the stream to receive 5 messages');
      assert.deepEqual(
        stream.events.map((e) => e.data),
        ['h0', 'h1', 'l0', 'l1', 'l2'],
      );
      // One refused publish (wrong token): counted, and never reaches the broker.
      const refused = await request(`${gw.url}/_warren/publish?channel=${sseChannel}`, {
        method: 'POST',
        headers: { authorization: 'Bearer not-the-token-0123456789' },
        body: 'nope',
      });
      await refused.body.text();
      assert.equal(refused.statusCode, 401);
      const received = Buffer.byteLength(stream.raw());
      stream.close();
      await stream.closed;
      await until(() => gateway.connections.size === 0, 'the stream to close');

      const after = await scrape(metricsUrl);
      assertDelta(before, after, 'warren_long_polls_total{outcome="delivered"}', 3);
      assertDelta(before, after, 'warren_long_polls_total{outcome="timed_out"}', 1);
      assertDelta(before, after, 'warren_long_polls_total{outcome="failed"}', 0);
      assertDelta(before, after, 'warren_long_polls_started_total', 4);
      assertDelta(before, after, 'warren_broker_gets_total', 4);
      assertDelta(before, after, 'warren_broker_gets_empty_total', 1);
      assertDelta(before, after, 'warren_http_publishes_total{result="accepted"}', 2);
      assertDelta(before, after, 'warren_http_publishes_total{result="refused"}', 1);
      assertDelta(before, after, 'warren_http_publishes_total{result="failed"}', 0);
      assertDelta(before, after, 'warren_broker_publishes_total', 8);
      assertDelta(before, after, 'warren_fan_out_deliveries_total', 5);
      // 3 polls and 5 fan-out messages: every delivery acknowledged, none requeued.
      assertDelta(before, after, 'warren_broker_deliveries_total', 8);
      assertDelta(before, after, 'warren_broker_acks_total', 8);
      assertDelta(before, after, 'warren_broker_requeues_total', 0);
      // One consumer queue and one fan-out queue, each declared and bound once.
      assertDelta(before, after, 'warren_broker_queue_declares_total', 2);
      assertDelta(before, after, 'warren_broker_queue_binds_total', 2);
      assertDelta(before, after, 'warren_broker_reconnects_total', 0);
      assertDelta(before, after, 'warren_slow_client_closes_total{transport="sse"}', 0);
      assertDelta(before, after, 'warren_bytes_out_total{transport="websocket"}', 0);
      // What the client read, plus the response head and chunk framing it did not see.
      const sseBytes = sample(after, 'warren_bytes_out_total{transport="sse"}') - sample(before, 'warren_bytes_out_total{transport="sse"}');
      assert.ok(sseBytes > received, `bytes out ${sseBytes} > ${received} bytes of event stream read`);
      assert.ok(sseBytes < received + 1024, `bytes out ${sseBytes}: the stream's ${received} bytes and one response head`);
      assert.equal(sample(after, 'warren_connections{transport="sse",kind="anonymous"}'), 0);
      assert.equal(sample(after, 'warren_long_polls_waiting'), 0);
    });

    it('counts identified streams apart from anonymous ones', async () => {
      const consumerId = unique('metrics-id-');
      const stream = readSse(gw.url, `/${unique('metrics-ident-')}`, { 'consumer-id': consumerId });
      assert.equal(await stream.status, 200);
      await until(() => gw.gateway.stats().streams.identified === 1, 'the identified stream to subscribe');
      const s = await scrape(metricsUrl);
      assert.equal(sample(s, 'warren_connections{transport="sse",kind="identified"}'), 1);
      assert.equal(sample(s, 'warren_connections{transport="sse",kind="anonymous"}'), 0);
      assert.equal(sample(s, 'warren_subscriptions{kind="identified"}'), 1);
      stream.close();
      await stream.closed;
      await until(() => gw.gateway.connections.size === 0, 'the stream to close');
    });

    it('counts a WebSocket connection and the bytes written to it', async () => {
      const before = await scrape(metricsUrl);
      const channel = `/${unique('metrics-ws-')}`;
      const ws = new WebSocket(`${gw.url.replace('http', 'ws')}${channel}`);
      const received: string[] = [];
      ws.on('message', (data) => received.push(String(data)));
      await once(ws, 'open');
      await until(() => gw.gateway.stats().fanOut.subscribers === 1, 'the socket to subscribe');
      const open = await scrape(metricsUrl);
      assert.equal(sample(open, 'warren_connections{transport="websocket",kind="anonymous"}'), 1);
      assert.equal(sample(open, 'warren_connections{transport="sse",kind="anonymous"}'), 0);
      const body = 'w'.repeat(1000);
      await gw.gateway.publish(channel, body);
      await gw.gateway.publish(channel, body);
      await until(() => received.length === 2, 'the socket to receive 2 messages');
      ws.close();
      await once(ws, 'close');
      await until(() => gw.gateway.connections.size === 0, 'the socket to close');
      const after = await scrape(metricsUrl);
      assert.equal(sample(after, 'warren_connections{transport="websocket",kind="anonymous"}'), 0);
      assertDelta(before, after, 'warren_fan_out_deliveries_total', 2);
      assertDelta(before, after, 'warren_bytes_out_total{transport="sse"}', 0);
      const wsBytes =
        sample(after, 'warren_bytes_out_total{transport="websocket"}') - sample(before, 'warren_bytes_out_total{transport="websocket"}');
      // Two 1000-byte frames (4-byte headers), the 101 handshake and the close frame.
      assert.ok(wsBytes > 2 * 1004 + 100, `bytes out ${wsBytes}: two frames and a handshake`);
      assert.ok(wsBytes < 2 * 1004 + 1024, `bytes out ${wsBytes}: no more than two frames, a handshake and a close`);
    });

    it('documents every warren_ metric it serves in docs/operations.md under "Metrics"', async () => {
      const doc = readFileSync(join(ROOT, 'docs', 'operations.md'), 'utf8');
      const section = /^## Metrics\n([\s\S]*?)(?=^## |(?![\s\S]))/m.exec(doc)?.[1];
      assert.ok(section !== undefined, 'docs/operations.md has a "## Metrics" section');
      const served = [...(await scrape(metricsUrl)).text.matchAll(METRIC_NAMES)];
      assert.ok(served.length >= 20, `only ${served.length} warren_ metrics served`);
      for (const [, name, type] of served) {
        assert.match(section, new RegExp(`\\|\\s*\`${name}\`\\s*\\|\\s*${type}\\s*\\|`), `${name} (${type}) is documented`);
      }
    });
  });
}

describe('the metrics listener', () => {
  it('is off by default, and the gateway port does not serve /metrics', async () => {
    const spec = OPTION_SPECS.find((s) => s.key === 'metricsPort');
    assert.equal(spec?.default, undefined);
    const gw = await startGateway('memory');
    try {
      assert.equal(gw.gateway.options.metricsPort, undefined);
      assert.equal(gw.gateway.metricsAddress(), undefined);
      // Without push routes /metrics is a channel like any other: a poll answered 204, not the metrics.
      const res = await poll(gw.url, '/metrics', { timeout: 0 });
      assert.equal(res.status, 204);
      assert.equal(res.body, '');
    } finally {
      await gw.close();
    }
  });

  it('times the auth checks asked of the application, by result, cached answers not counted', async () => {
    const app = createServer((req, res) => {
      res.writeHead(String(req.headers['warren-channel']).endsWith('/ok') ? 204 : 403).end();
    });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    const authUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}/auth`;
    const gw = await startGateway('memory', { metricsPort: 0, authUrl });
    try {
      const metricsUrl = `http://127.0.0.1:${gw.gateway.metricsAddress()!.port}`;
      const allowed = 'warren_upstream_request_duration_seconds_count{call="auth",result="allowed"}';
      const refused = 'warren_upstream_request_duration_seconds_count{call="auth",result="refused"}';
      const none = await scrape(metricsUrl);
      assert.equal(none.samples.get(allowed), undefined);
      const channel = `/${unique('auth-')}`;
      assert.equal((await poll(gw.url, `${channel}/ok`, { timeout: 0 })).status, 204);
      assert.equal((await poll(gw.url, `${channel}/ok`, { timeout: 0 })).status, 204);
      assert.equal((await poll(gw.url, `${channel}/no`, { timeout: 0 })).status, 403);
      const s = await scrape(metricsUrl);
      assert.equal(sample(s, allowed), 1, 'the second poll was answered from the auth cache');
      assert.equal(sample(s, refused), 1);
      assert.ok(sample(s, 'warren_upstream_request_duration_seconds_sum{call="auth",result="allowed"}') > 0);
      assert.equal(sample(s, 'warren_upstream_request_duration_seconds_bucket{le="30",call="auth",result="allowed"}'), 1);
    } finally {
      await gw.close();
      await new Promise((resolve) => app.close(resolve));
    }
  });

  it('counts a stream closed for reading too slowly, by transport', async () => {
    const gw = await startGateway('memory', { metricsPort: 0, maxPendingBytes: 64 * 1024 });
    const url = new URL(gw.url);
    const stalled = connect(Number(url.port), url.hostname);
    stalled.on('error', () => undefined);
    stalled.pause();
    try {
      const metricsUrl = `http://127.0.0.1:${gw.gateway.metricsAddress()!.port}`;
      const channel = `/${unique('metrics-slow-')}`;
      stalled.write(`GET ${channel} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`);
      await until(() => gw.gateway.stats().fanOut.subscribers === 1, 'the stalled stream to subscribe');
      assert.equal(sample(await scrape(metricsUrl), 'warren_slow_client_closes_total{transport="sse"}'), 0);
      // 16 KiB messages until the gateway gives up on the client (loopback's buffers hide a few MiB).
      const body = 'y'.repeat(16 * 1024);
      for (let i = 0; i < 4000 && gw.gateway.stats().fanOut.slowClosed === 0; i++) await gw.gateway.publish(channel, body);
      await until(() => gw.gateway.connections.size === 0, 'the stalled stream to be closed');
      const s = await scrape(metricsUrl);
      assert.equal(sample(s, 'warren_slow_client_closes_total{transport="sse"}'), 1);
      assert.equal(sample(s, 'warren_slow_client_closes_total{transport="websocket"}'), 0);
    } finally {
      stalled.destroy();
      await gw.close();
    }
  });

  it('stops with close()', async () => {
    const gateway = createGateway({ port: 0, host: '127.0.0.1', metricsPort: 0, logger: silentLogger });
    await gateway.listen();
    const port = gateway.metricsAddress()!.port;
    assert.equal((await scrape(`http://127.0.0.1:${port}`)).status, 200);
    await gateway.close();
    assert.equal(gateway.metricsAddress(), undefined);
    await assert.rejects(scrape(`http://127.0.0.1:${port}`), /ECONNREFUSED/);
  });

  it("starts with a gateway attached to an application's server, and leaves that server's /metrics to it", async () => {
    const server = createServer((_req, res) => res.end('the app'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const gateway = createGateway({ server, pushRoutes: '/live/', metricsPort: 0, logger: silentLogger });
    try {
      await until(() => gateway.metricsAddress() !== undefined, 'the metrics listener to start');
      const metrics = await scrape(`http://127.0.0.1:${gateway.metricsAddress()!.port}`);
      assert.equal(metrics.status, 200);
      assert.equal(sample(metrics, 'warren_broker_ready'), 1);
      const app = await request(`http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`);
      assert.equal(await app.body.text(), 'the app');
    } finally {
      await gateway.close();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('refuses a port in use with a message naming the metrics options', async () => {
    const first = createGateway({ port: 0, host: '127.0.0.1', metricsPort: 0, logger: silentLogger });
    await first.listen();
    const second = createGateway({ port: 0, host: '127.0.0.1', metricsPort: first.metricsAddress()!.port, logger: silentLogger });
    try {
      await assert.rejects(second.listen(), /metrics listener cannot listen on 127\.0\.0\.1 port \d+ \(EADDRINUSE\).*--metrics-port/);
    } finally {
      await second.close();
      await first.close();
    }
  });
});
