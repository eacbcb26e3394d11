/**
 * `warren serve --workers 2` (issue 14, item 8): a node:cluster primary and
 * two workers on one port, on RabbitMQ. Connections reach both workers, a
 * message published with the generated token reaches SSE clients on either,
 * `/metrics` sums the workers, a killed worker is replaced, SIGTERM drains
 * every worker and exits 0; and the embedded broker refuses workers.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { tokenFilePath } from '@warren/producer';
import { AMQP_URL, rawRequest, readSse, requireRabbit, spawnServe, unique, until, warren, type SseReader } from './support/index.js';

type Served = Awaited<ReturnType<typeof spawnServe>>;

/** A port free a moment ago (for --metrics-port: the banner does not name it). */
async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

/** `/_warren/stats` over a new connection each time (the cluster deals connections out round-robin). */
async function stats(base: string, token: string): Promise<{ pid: number; fanOut: { subscribers: number } }> {
  const agent = new Agent();
  try {
    const res = await request(`${base}/_warren/stats`, {
      headers: { authorization: `Bearer ${token}` },
      // A connection handed to a worker just as it was killed is never answered.
      signal: AbortSignal.timeout(3000),
      dispatcher: agent,
    });
    assert.equal(res.statusCode, 200);
    return (await res.body.json()) as { pid: number; fanOut: { subscribers: number } };
  } finally {
    await agent.destroy();
  }
}

/** The workers' pids seen over `tries` connections, with what each reported last. */
async function workersSeen(base: string, token: string, tries = 8): Promise<Map<number, { fanOut: { subscribers: number } }>> {
  const seen = new Map<number, { fanOut: { subscribers: number } }>();
  for (let k = 0; k < tries; k++) {
    const s = await stats(base, token);
    seen.set(s.pid, s);
  }
  return seen;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('warren serve --workers refuses the embedded broker and bad counts', () => {
  it('--workers 2 without --amqp-url exits 2 and says why', { timeout: 30_000 }, async () => {
    const r = await warren(['serve', '--workers', '2', '--port', '0']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^warren serve: --workers 2 needs --amqp-url \/ WARREN_AMQP_URL: the embedded broker lives inside one process/);
    assert.equal(r.stdout, '');
  });

  it('a count from --config counts as the flag; a bad one from the variable exits 2', { timeout: 30_000 }, async () => {
    const file = join(tmpdir(), `${unique('warren-workers-')}.json`);
    writeFileSync(file, JSON.stringify({ workers: 2, port: 0 }));
    const fromFile = await warren(['serve', '--config', file]);
    assert.equal(fromFile.code, 2, fromFile.stderr);
    assert.match(fromFile.stderr, /--workers 2 needs --amqp-url/);
    const bad = await warren(['serve', '--port', '0'], { env: { WARREN_WORKERS: 'many' } });
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--workers \/ WARREN_WORKERS: "many" is not a number of workers \(1 to 256, or auto: one per core\)/);
  });
});

describe('warren serve --workers 2 on RabbitMQ', () => {
  let serve: Served;
  let token: string;
  let metricsPort: number;
  const readers: SseReader[] = [];
  const channel = `/${unique('workers-')}`;

  before(async () => {
    await requireRabbit();
    metricsPort = await freePort();
    serve = await spawnServe([
      '--workers',
      '2',
      '--amqp-url',
      AMQP_URL,
      '--metrics-port',
      String(metricsPort),
      '--drain-delay',
      '200ms',
      '--drain-spread',
      '300ms',
      '--shutdown-timeout',
      '5s',
    ]);
    token = readFileSync(tokenFilePath(Number(new URL(serve.url).port)), 'utf8').trim();
  });

  after(async () => {
    for (const r of readers) r.close();
    await serve?.stop();
  });

  it('prints one banner, and serves requests from both workers with the one generated token', { timeout: 30_000 }, async () => {
    assert.equal(serve.output().match(/Warren gateway on /g)?.length, 1, serve.output());
    assert.match(serve.output(), /\(RabbitMQ amqp:\/\/guest:\*\*\*@127\.0\.0\.1:5672\/?, 2 workers\)/);
    const pids = [...(await workersSeen(serve.url, token)).keys()];
    assert.equal(pids.length, 2, `two workers answered: ${pids.join(', ')}`);
    assert.ok(!pids.includes(serve.child.pid!), 'the primary serves no requests');
  });

  it(
    'SSE clients on either worker get what warren publish and the HTTP endpoint send; /metrics sums both',
    { timeout: 60_000 },
    async () => {
      for (let k = 0; k < 6; k++) readers.push(readSse(serve.url, channel));
      for (const r of readers) assert.equal(await r.status, 200);
      await until(
        async () => [...(await workersSeen(serve.url, token)).values()].reduce((n, s) => n + s.fanOut.subscribers, 0) === 6,
        'six subscribers over the workers',
        20_000,
        100,
      );
      const perWorker = [...(await workersSeen(serve.url, token)).values()].map((s) => s.fanOut.subscribers);
      assert.ok(perWorker.length === 2 && perWorker.every((n) => n > 0), `both workers hold streams: ${perWorker.join(', ')}`);
      const metrics = await rawRequest(`http://127.0.0.1:${metricsPort}`, '/metrics');
      assert.equal(metrics.status, 200);
      assert.match(metrics.body, /^warren_connections\{transport="sse",kind="anonymous"\} 6$/m);

      // No --token: warren publish finds the token file the primary wrote for this port.
      const published = await warren(['publish', channel, 'from the command', '--url', serve.url]);
      assert.equal(published.code, 0, published.stderr);
      const res = await rawRequest(serve.url, `/_warren/publish?channel=${encodeURIComponent(channel)}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain' },
        body: 'from the endpoint',
      });
      assert.equal(res.status, 200, res.body);
      await until(() => readers.every((r) => r.events.length >= 2), 'both messages on every stream', 20_000, 50);
      for (const r of readers) assert.deepEqual(r.events.map((e) => e.data).sort(), ['from the command', 'from the endpoint']);
    },
  );

  it('a worker killed with SIGKILL is replaced by a new one that serves', { timeout: 60_000 }, async () => {
    const before = [...(await workersSeen(serve.url, token)).keys()];
    assert.equal(before.length, 2);
    process.kill(before[0]!, 'SIGKILL');
    await until(
      async () => {
        const now = [...(await workersSeen(serve.url, token, 6).catch(() => new Map())).keys()];
        return now.length === 2 && !now.includes(before[0]!) && now.includes(before[1]!);
      },
      'a new worker beside the survivor',
      30_000,
      200,
    );
  });

  it('SIGTERM drains every worker: the streams end, the token file goes, the process exits 0', { timeout: 30_000 }, async () => {
    const pids = [...(await workersSeen(serve.url, token)).keys()];
    const tokenFile = tokenFilePath(Number(new URL(serve.url).port));
    assert.ok(existsSync(tokenFile));
    const closed = once(serve.child, 'close');
    const started = Date.now();
    serve.child.kill('SIGTERM');
    const [code] = (await closed) as [number | null];
    assert.equal(code, 0, serve.output());
    // Within the drain's bounds: --shutdown-timeout 5s, and the primary's 5 s of grace over it.
    assert.ok(Date.now() - started < 10_000, `stopped after ${Date.now() - started} ms`);
    // The streams of the surviving worker were ended by its drain (with a retry hint), not cut.
    await Promise.all(readers.map((r) => r.closed));
    assert.ok(
      readers.some((r) => /retry: \d+/.test(r.raw().split('from the endpoint')[1] ?? '')),
      'a drain retry hint on a stream',
    );
    assert.ok(!existsSync(tokenFile), 'the token file is removed');
    for (const pid of pids) assert.ok(!alive(pid), `worker ${pid} is gone`);
  });
});
