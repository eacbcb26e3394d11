import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createServer as createHttpsServer, Server as HttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';
import { WebSocket } from 'ws';
import { createGateway, OptionError, silentLogger, type Logger } from '@warren/gateway';
import { AMQP_URL, requireRabbit, spawnServe, TOKEN, unique, until, warren } from './support/index.js';

const run = promisify(execFile);

interface Pair {
  cert: string;
  key: string;
}

/**
 * A throwaway CA, and certificates it signs for localhost and 127.0.0.1,
 * made with the `openssl` command (OpenSSL 3: `req -CA`).
 */
class Certs {
  readonly dir = mkdtempSync(join(tmpdir(), 'warren-tls-'));
  readonly ca = join(this.dir, 'ca.pem');
  private readonly caKey = join(this.dir, 'ca.key');

  async init(): Promise<void> {
    await openssl(['-keyout', this.caKey, '-out', this.ca, '-subj', '/CN=Warren test CA']);
  }

  async leaf(name: string): Promise<Pair> {
    const pair = { cert: join(this.dir, `${name}.pem`), key: join(this.dir, `${name}.key`) };
    await openssl([
      '-keyout',
      pair.key,
      '-out',
      pair.cert,
      '-subj',
      '/CN=localhost',
      '-CA',
      this.ca,
      '-CAkey',
      this.caKey,
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-addext',
      'basicConstraints=critical,CA:FALSE',
    ]);
    return pair;
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function openssl(args: string[]): Promise<void> {
  const common = ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1'];
  await run('openssl', [...common, ...args], { timeout: 30_000 });
}

const fingerprintOf = (file: string): string => new X509Certificate(readFileSync(file)).fingerprint256;

/** The SHA-256 fingerprint of the certificate a new TLS connection to `url` is shown (verified against `ca`). */
function servedFingerprint(url: string, ca: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: hostname, port: Number(port), ca: readFileSync(ca), servername: 'localhost' }, () => {
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      socket.end();
      resolve(fingerprint);
    });
    socket.once('error', reject);
  });
}

/** An SSE stream read by `curl -N --cacert`: its output so far, and a stop. */
function curlSse(url: string, ca: string): { output: () => string; stop: () => void } {
  const child = spawn('curl', ['-sS', '-N', '--cacert', ca, '-H', 'Accept: text/event-stream', '--max-time', '60', url], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  return { output: () => output, stop: () => child.kill() };
}

/** A plain socket over wss, trusting `ca`, once open (subscribed): the frames it receives. */
async function wssSocket(url: string, ca: string): Promise<{ ws: WebSocket; frames: string[] }> {
  const ws = new WebSocket(url, { ca: readFileSync(ca) });
  const frames: string[] = [];
  ws.on('message', (data) => frames.push(data.toString()));
  await once(ws, 'open');
  return { ws, frames };
}

/** `warren publish` over https, trusting the CA the standard way. */
async function cliPublish(url: string, channel: string, text: string, ca: string, token?: string): Promise<void> {
  const env: NodeJS.ProcessEnv = { NODE_EXTRA_CA_CERTS: ca };
  if (token !== undefined) env.WARREN_PUBLISH_TOKEN = token;
  const pub = await warren(['publish', channel, text, '--url', url], { env });
  assert.equal(pub.code, 0, pub.stderr);
}

const tokenOf = (output: string): string => readFileSync(/generated, in (\S+)/.exec(output)![1]!, 'utf8').trim();

describe('warren serve --tls-cert / --tls-key (embedded broker)', () => {
  const certs = new Certs();
  let first: Pair;
  let second: Pair;
  let live: Pair;
  let served: Awaited<ReturnType<typeof spawnServe>>;
  let agent: Agent;
  before(async () => {
    await certs.init();
    [first, second] = await Promise.all([certs.leaf('first'), certs.leaf('second')]);
    // The files the gateway reads, replaced in place as an operator (or certbot) would.
    live = { cert: join(certs.dir, 'live.pem'), key: join(certs.dir, 'live.key') };
    copyFileSync(first.cert, live.cert);
    copyFileSync(first.key, live.key);
    served = await spawnServe(['--tls-cert', live.cert, '--tls-key', live.key]);
    agent = new Agent({ connect: { ca: readFileSync(certs.ca) } });
  });
  after(async () => {
    await served?.stop();
    await agent?.close();
    certs.remove();
  });

  it('announces https:// URLs', () => {
    assert.match(served.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.match(served.output(), /receive: {2}curl https:\/\/localhost:\d+\/greetings/);
    assert.match(served.output(), /publish: {2}npx warren publish \/greetings 'hi there!' --url https:\/\/localhost:\d+/);
    assert.match(served.output(), /tls: certificate from .*live\.pem \(SIGHUP/);
  });

  it('curl --cacert reads an SSE stream over https that receives what `warren publish` sends (NODE_EXTRA_CA_CERTS)', async () => {
    const channel = `/${unique('tls-sse-')}`;
    const stream = curlSse(`${served.url}${channel}`, certs.ca);
    try {
      // Once the stream has its retry hint it is subscribed.
      await until(() => stream.output().includes('retry:'), 'the stream to open', 15_000);
      // No token given: `warren publish` finds the file `warren serve` wrote for this https port.
      await cliPublish(served.url, channel, 'over https', certs.ca);
      await until(() => stream.output().includes('data: over https\n'), 'the message on the stream', 15_000);
    } finally {
      stream.stop();
    }
  });

  it('`warren listen` long-polls over https (NODE_EXTRA_CA_CERTS)', async () => {
    const channel = `/${unique('tls-listen-')}`;
    const consumerId = unique('tls-listener-');
    const env = { NODE_EXTRA_CA_CERTS: certs.ca };
    const stats = async (): Promise<{ knownQueues: number; longPoll: { active: number } }> => {
      const res = await request(`${served.url}/_warren/stats`, {
        dispatcher: agent,
        headers: { authorization: `Bearer ${tokenOf(served.output())}` },
      });
      return (await res.body.json()) as { knownQueues: number; longPoll: { active: number } };
    };
    // The listener's queue is declared and its poll waits (an anonymous stream's consumer, lingering
    // from an earlier test, must not pass for it: a message published before the queue exists is not kept).
    const queuesBefore = (await stats()).knownQueues;
    const listening = warren(['listen', channel, '--url', served.url, '--consumer-id', consumerId, '--count', '1', '--timeout', '5'], {
      env,
    });
    await until(
      async () => {
        const now = await stats();
        return now.knownQueues > queuesBefore && now.longPoll.active === 1;
      },
      'listen to wait',
      15_000,
    );
    await cliPublish(served.url, channel, 'polled over https', certs.ca);
    const out = await listening;
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stdout, 'polled over https\n');
  });

  it('a WebSocket over wss (ws with `ca`) receives a message published with undici over https', async () => {
    const channel = `/${unique('tls-ws-')}`;
    const { ws, frames } = await wssSocket(`${served.url.replace('https:', 'wss:')}${channel}`, certs.ca);
    try {
      const res = await request(`${served.url}/_warren/publish?channel=${encodeURIComponent(channel)}`, {
        method: 'POST',
        dispatcher: agent,
        headers: { authorization: `Bearer ${tokenOf(served.output())}`, 'content-type': 'text/plain' },
        body: 'over wss',
      });
      assert.equal(res.statusCode, 200, await res.body.text());
      await until(() => frames.length === 1, 'the frame', 15_000);
      assert.deepEqual(frames, ['over wss']);
    } finally {
      ws.terminate();
    }
  });

  it('plain HTTP to the TLS port gets no answer, nor does a client that does not trust the CA; a trusting one gets Secure cookies', async () => {
    await assert.rejects(request(`${served.url.replace('https:', 'http:')}/_warren/health`, { headersTimeout: 10_000 }));
    await assert.rejects(request(`${served.url}/_warren/health`), /certificate/);
    const health = await request(`${served.url}/_warren/health`, { dispatcher: agent });
    assert.equal(health.statusCode, 200);
    await health.body.dump();
    // The gateway knows its client came over https: a new consumer id's cookie is Secure.
    const polled = await request(`${served.url}/${unique('tls-cookie-')}?timeout=0`, { dispatcher: agent });
    await polled.body.dump();
    assert.match(String(polled.headers['set-cookie']), /^warren_consumer_id=c_.*; Secure/);
  });

  it('SIGHUP serves replaced files to new connections, keeps open streams, and keeps the old certificate when the new one is broken', async () => {
    assert.equal(await servedFingerprint(served.url, certs.ca), fingerprintOf(first.cert));
    const channel = `/${unique('tls-reload-')}`;
    const stream = curlSse(`${served.url}${channel}`, certs.ca);
    try {
      await until(() => stream.output().includes('retry:'), 'the stream to open', 15_000);
      copyFileSync(second.cert, live.cert);
      copyFileSync(second.key, live.key);
      served.child.kill('SIGHUP');
      await until(
        async () => (await servedFingerprint(served.url, certs.ca)) === fingerprintOf(second.cert),
        'the new certificate',
        15_000,
      );
      await cliPublish(served.url, channel, 'after the reload', certs.ca);
      await until(() => stream.output().includes('data: after the reload\n'), 'the message on the stream opened before', 15_000);

      writeFileSync(live.cert, 'not a certificate\n');
      served.child.kill('SIGHUP');
      await until(() => /tls reload failed/.test(served.output()), 'the reload error in the log', 15_000);
      assert.match(served.output(), /live\.pem holds no PEM certificate/);
      assert.equal(served.child.exitCode, null, 'the gateway is still running');
      assert.equal(await servedFingerprint(served.url, certs.ca), fingerprintOf(second.cert));
      await cliPublish(served.url, channel, 'after the broken reload', certs.ca);
      await until(() => stream.output().includes('data: after the broken reload\n'), 'the second message', 15_000);
    } finally {
      stream.stop();
    }
  });
});

describe('warren serve --tls-cert / --tls-key on RabbitMQ, with two workers', () => {
  const certs = new Certs();
  let served: Awaited<ReturnType<typeof spawnServe>>;
  let pair: Pair;
  let next: Pair;
  before(async () => {
    await requireRabbit();
    await certs.init();
    const first = await certs.leaf('rabbit');
    next = await certs.leaf('rabbit-next');
    pair = { cert: join(certs.dir, 'rabbit-live.pem'), key: join(certs.dir, 'rabbit-live.key') };
    copyFileSync(first.cert, pair.cert);
    copyFileSync(first.key, pair.key);
    served = await spawnServe([
      '--amqp-url',
      AMQP_URL,
      '--publish-token',
      TOKEN,
      '--workers',
      '2',
      '--tls-cert',
      pair.cert,
      '--tls-key',
      pair.key,
    ]);
  });
  after(async () => {
    await served?.stop();
    certs.remove();
  });

  it('a wss socket receives what `warren publish --url https://…` sends', async () => {
    assert.match(served.output(), /Warren gateway on https:\/\/localhost:\d+ \(RabbitMQ amqp:/);
    const channel = `/${unique('tls-rabbit-')}`;
    const { ws, frames } = await wssSocket(`${served.url.replace('https:', 'wss:')}${channel}`, certs.ca);
    try {
      await cliPublish(served.url, channel, 'through RabbitMQ over https', certs.ca, TOKEN);
      await until(() => frames.length === 1, 'the frame', 15_000);
      assert.deepEqual(frames, ['through RabbitMQ over https']);
    } finally {
      ws.terminate();
    }
  });

  it('SIGHUP to the primary reaches every worker: each new connection, whichever worker takes it, gets the new certificate', async () => {
    const before = fingerprintOf(pair.cert);
    assert.equal(await servedFingerprint(served.url, certs.ca), before);
    copyFileSync(next.cert, pair.cert);
    copyFileSync(next.key, pair.key);
    served.child.kill('SIGHUP');
    const wanted = fingerprintOf(next.cert);
    await until(async () => (await servedFingerprint(served.url, certs.ca)) === wanted, 'the new certificate', 15_000);
    // The cluster deals connections round-robin: eight in a row reach both workers.
    const seen = [];
    for (let i = 0; i < 8; i++) seen.push(await servedFingerprint(served.url, certs.ca));
    assert.deepEqual(new Set(seen), new Set([wanted]));
    assert.equal(served.child.exitCode, null, 'the primary is still running');
  });
});

describe('TLS options of createGateway() and warren serve', () => {
  const certs = new Certs();
  let first: Pair;
  let second: Pair;
  before(async () => {
    await certs.init();
    [first, second] = await Promise.all([certs.leaf('first'), certs.leaf('second')]);
  });
  after(() => certs.remove());

  const serve = (args: string[], env: NodeJS.ProcessEnv = {}) => warren(['serve', '--port', '0', '--host', '127.0.0.1', ...args], { env });

  it('`warren serve` with one of --tls-cert and --tls-key, or an unreadable file: exit 2, naming the setting', async () => {
    const certOnly = await serve(['--tls-cert', first.cert]);
    assert.equal(certOnly.code, 2, certOnly.stderr);
    assert.match(certOnly.stderr, /--tls-cert \/ WARREN_TLS_CERT \/ tlsCert needs --tls-key \/ WARREN_TLS_KEY \/ tlsKey/);
    const missing = await serve(['--tls-cert', join(certs.dir, 'absent.pem')], { WARREN_TLS_KEY: first.key });
    assert.equal(missing.code, 2, missing.stderr);
    assert.match(missing.stderr, /^warren serve: --tls-cert .*: cannot read .*absent\.pem \(ENOENT\)\n$/);
  });

  it('createGateway(): a key alone, a file that is not PEM, or a key of another certificate is an OptionError naming the file', () => {
    const refused = (options: { tlsCert?: string; tlsKey?: string }, why: RegExp) =>
      assert.throws(
        () => createGateway({ port: 0, ...options }),
        (err: unknown) => err instanceof OptionError && why.test(err.message),
      );
    refused({ tlsKey: first.key }, /--tls-key \/ WARREN_TLS_KEY \/ tlsKey needs --tls-cert/);
    refused({ tlsCert: first.key, tlsKey: first.key }, /first\.key holds no PEM certificate/);
    refused({ tlsCert: first.cert, tlsKey: first.cert }, /first\.pem holds no PEM private key/);
    refused({ tlsCert: first.cert, tlsKey: second.key }, /second\.key is not the key of the certificate in .*first\.pem/);
  });

  it("an attached gateway serves push over the application's own https server", async () => {
    const app = createHttpsServer({ cert: readFileSync(first.cert), key: readFileSync(first.key) }, (_req, res) => res.end('the app'));
    const gateway = createGateway({ server: app, pushRoutes: '/live/', logger: silentLogger });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    const base = `https://127.0.0.1:${(app.address() as AddressInfo).port}`;
    const channel = `/live/${unique('tls-attached-')}`;
    const stream = curlSse(`${base}${channel}`, certs.ca);
    try {
      await until(() => stream.output().includes('retry:'), 'the stream to open', 15_000);
      await gateway.publish(channel, 'attached over https');
      await until(() => stream.output().includes('data: attached over https\n'), 'the message', 15_000);
    } finally {
      stream.stop();
      await gateway.close();
      app.close();
    }
  });

  it('createGateway(): TLS with an attached server is refused; reloadTls() reports what it did', async () => {
    const app = createHttpServer();
    assert.throws(
      () => createGateway({ server: app, pushRoutes: '/live/', tlsCert: first.cert, tlsKey: first.key }),
      (err: unknown) => err instanceof OptionError && /server and tlsCert \(--tls-cert\) exclude each other/.test(err.message),
    );
    const errors: string[] = [];
    const logger: Logger = { debug() {}, info() {}, warn() {}, error: (msg, fields) => errors.push(`${msg} ${String(fields?.error)}`) };
    const dir = mkdtempSync(join(certs.dir, 'lib-'));
    const live = { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
    copyFileSync(first.cert, live.cert);
    copyFileSync(first.key, live.key);
    const gateway = createGateway({ port: 0, host: '127.0.0.1', logger, tlsCert: live.cert, tlsKey: live.key });
    const plain = createGateway({ port: 0, host: '127.0.0.1', logger });
    try {
      assert.ok(gateway.server instanceof HttpsServer);
      const { port } = await gateway.listen();
      copyFileSync(second.key, live.key);
      assert.equal(gateway.reloadTls(), false, 'a key that is not the certificate’s is refused');
      assert.match(errors.join('\n'), /tls reload failed.*key\.pem is not the key of the certificate/);
      assert.equal(await servedFingerprint(`https://127.0.0.1:${port}`, certs.ca), fingerprintOf(first.cert));
      copyFileSync(second.cert, live.cert);
      assert.equal(gateway.reloadTls(), true);
      assert.equal(await servedFingerprint(`https://127.0.0.1:${port}`, certs.ca), fingerprintOf(second.cert));
      assert.equal(plain.reloadTls(), false, 'nothing to reload without TLS');
    } finally {
      await Promise.all([gateway.close(), plain.close()]);
    }
  });
});
