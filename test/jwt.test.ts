import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import amqp from 'amqplib';
import { EventSource } from 'eventsource';
import { importPKCS8, SignJWT } from 'jose';
import { WebSocket } from 'ws';
import { consumerQueueName } from '@warren/protocol';
import { signChannelToken } from '@warren/producer';
import { AMQP_URL, httpPublish, rawRequest, readSse, startGateway, unique, until, type TestGateway } from './support/index.js';

// Tokens are minted by a stock JWT library in another language: Debian's python3-jwt (PyJWT).
const PYTHON = ['/usr/bin/python3', 'python3'].find((python) => {
  try {
    execFileSync(python, ['-c', 'import jwt, cryptography'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
});
const MISSING = 'python3 with PyJWT is missing: apt-get install -y python3-jwt python3-cryptography';
// In CI a missing PyJWT fails the suite (the before hook throws); elsewhere the suite is skipped, saying why.
const skip = PYTHON === undefined && process.env.CI !== 'true' ? MISSING : false;

/** Reads {alg, key, claims, times, headers, by_hand} on stdin, prints one JWT. */
const MINT = String.raw`
import base64, hashlib, hmac, json, sys, time
import jwt
req = json.load(sys.stdin)
claims = dict(req.get("claims") or {})
now = int(time.time())
for name, offset in (req.get("times") or {}).items():
    claims[name] = now + offset
headers = req.get("headers") or None
if req.get("by_hand"):
    # PyJWT refuses to HMAC with a PEM public key (its own alg-confusion guard): build it as an attacker would.
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", **(headers or {})}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(req["key"].encode(), (head + "." + body).encode(), hashlib.sha256).digest()
    print(head + "." + body + "." + b64(sig))
else:
    print(jwt.encode(claims, req.get("key"), algorithm=req["alg"], headers=headers))
`;

interface MintRequest {
  alg: 'HS256' | 'RS256' | 'ES256' | 'EdDSA' | 'none';
  /** The HMAC secret, or the private key as PEM; none for `none`. */
  key?: string | KeyObject;
  claims?: Record<string, unknown>;
  /** Claims set to python's now plus this many seconds (`exp`, `nbf`). */
  times?: Record<string, number>;
  headers?: Record<string, string>;
  /** HS256 computed by hand (PyJWT will not HMAC with a public key). */
  by_hand?: boolean;
}

function mint(req: MintRequest): Promise<string> {
  const key = req.key === undefined || typeof req.key === 'string' ? req.key : req.key.export({ type: 'pkcs8', format: 'pem' }).toString();
  const input = JSON.stringify({ times: { exp: 60 }, ...req, key });
  return new Promise((resolve, reject) => {
    const child = execFile(PYTHON!, ['-c', MINT], { timeout: 15_000 }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`minting with PyJWT failed: ${stderr || err.message}`));
      else resolve(stdout.trim());
    });
    child.stdin!.end(input);
  });
}

const SECRET = 'a-jwt-secret-of-at-least-32-characters!!';
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const otherRsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ed = generateKeyPairSync('ed25519');
const pem = (key: KeyObject): string => key.export({ type: 'spki', format: 'pem' }).toString();
const jwk = (key: KeyObject, extra: Record<string, string> = {}) => ({ ...key.export({ format: 'jwk' }), ...extra });

const dir = mkdtempSync(join(tmpdir(), 'warren-jwt-'));
function keyFile(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** An SSE subscription with the `eventsource` package; resolves once open. */
async function openEventSource(url: string): Promise<{ next(): Promise<string>; close(): void }> {
  const source = new EventSource(url);
  const queued: string[] = [];
  const waiting: Array<(data: string) => void> = [];
  source.onmessage = (event) => {
    const resolve = waiting.shift();
    if (resolve !== undefined) resolve(event.data as string);
    else queued.push(event.data as string);
  };
  await new Promise<void>((resolve, reject) => {
    source.onopen = () => resolve();
    source.onerror = (event) => {
      source.close();
      reject(new Error(`EventSource refused: ${(event as { code?: number }).code ?? ''} ${(event as { message?: string }).message ?? ''}`));
    };
  });
  return {
    next: () => {
      const ready = queued.shift();
      if (ready !== undefined) return Promise.resolve(ready);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no SSE message within 10 s')), 10_000);
        waiting.push((data) => {
          clearTimeout(timer);
          resolve(data);
        });
      });
    },
    close: () => source.close(),
  };
}

/** Subscribes over SSE with `curl` (token in `Authorization: Bearer`), publishes once it is open, returns what arrived. */
async function curlReceives(gw: TestGateway, channel: string, token: string, body: string): Promise<string> {
  const child = spawn('curl', [
    '-sS',
    '-N',
    '-i',
    '--max-time',
    '20',
    '-H',
    'Accept: text/event-stream',
    '-H',
    `Authorization: Bearer ${token}`,
    `${gw.url}${channel}`,
  ]);
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  try {
    await until(() => /^HTTP\/1\.1 \d+/.test(out) || child.exitCode !== null, 'curl to get an answer');
    assert.match(out, /^HTTP\/1\.1 200/, out);
    assert.equal((await httpPublish(gw.url, channel, body)).status, 200);
    await until(() => out.includes(`data: ${body}`) || child.exitCode !== null, 'the message over curl');
    return out;
  } finally {
    child.kill();
    if (child.exitCode === null) await once(child, 'close');
  }
}

/** Subscribes over SSE with `eventsource` (`?token=`), publishes, returns the message data. */
async function eventSourceReceives(gw: TestGateway, channel: string, token: string, body: string): Promise<string> {
  const source = await openEventSource(`${gw.url}${channel}?token=${token}`);
  try {
    assert.equal((await httpPublish(gw.url, channel, body)).status, 200);
    return await source.next();
  } finally {
    source.close();
  }
}

/** The status and error code an SSE request with `token` gets (a stream that opens is closed at once). */
async function sseRefusal(gw: TestGateway, channel: string, token: string): Promise<{ status: number; code: string | undefined }> {
  const sse = readSse(gw.url, `${channel}?token=${encodeURIComponent(token)}`);
  const status = await sse.status;
  if (status === 200) {
    sse.close();
    return { status, code: undefined };
  }
  await sse.closed;
  let code: string | undefined;
  try {
    code = (JSON.parse(sse.raw()) as { code?: string }).code;
  } catch {
    code = undefined;
  }
  return { status, code };
}

/** A gateway that verifies tokens refuses a subscription that carries none. */
async function assertTokenRequired(gw: TestGateway, channel: string): Promise<void> {
  const sse = readSse(gw.url, channel);
  assert.equal(await sse.status, 401, 'a subscription without a token is refused');
  await sse.closed;
  assert.equal((JSON.parse(sse.raw()) as { code: string }).code, 'UNAUTHORIZED');
}

describe('standard tokens (JWT)', { skip }, () => {
  before(() => {
    if (PYTHON === undefined) throw new Error(MISSING);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  describe('HS256 with --token-secret', () => {
    let gw: TestGateway;
    before(async () => {
      gw = await startGateway('memory', { tokenSecret: SECRET });
    });
    after(() => gw.close());

    it('opens an SSE stream (eventsource, ?token=) and delivers a published message', async () => {
      const token = await mint({ alg: 'HS256', key: SECRET, claims: { sub: 'u1', channels: ['/jwt/hs/*'] } });
      assert.equal(await eventSourceReceives(gw, '/jwt/hs/room', token, 'hello-hs256'), 'hello-hs256');
    });

    it('works on long-poll and WebSocket too, and v1 tokens still work beside it', async () => {
      const token = await mint({ alg: 'HS256', key: SECRET, claims: { sub: 'u1', channels: ['/jwt/hs/*'] } });
      assert.equal((await rawRequest(gw.url, `/jwt/hs/poll?timeout=0&token=${token}`)).status, 204);
      const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/jwt/hs/socket`, { headers: { authorization: `Bearer ${token}` } });
      await once(ws, 'open');
      ws.close();
      const v1 = signChannelToken({ consumerId: 'u1', channels: ['/jwt/hs/poll'], ttlMs: 60_000 }, SECRET);
      assert.equal((await rawRequest(gw.url, `/jwt/hs/poll?timeout=0&token=${v1}`)).status, 204);
    });

    it('makes "sub" the identity that owns the queue, whatever consumer id the client sends', async () => {
      const channel = `/jwt/hs/${unique('own')}`;
      const alice = await mint({ alg: 'HS256', key: SECRET, claims: { sub: 'alice', channels: [channel] } });
      const bob = await mint({ alg: 'HS256', key: SECRET, claims: { sub: 'bob', channels: [channel] } });
      assert.equal((await rawRequest(gw.url, `${channel}?timeout=0&token=${alice}`)).status, 204); // alice's queue exists now
      await httpPublish(gw.url, channel, 'for-alice');
      // bob naming alice's id reads his own (empty) queue, not hers.
      const asBob = await rawRequest(gw.url, `${channel}?timeout=0&token=${bob}`, { headers: { 'consumer-id': 'alice' } });
      assert.equal(asBob.status, 204);
      const asAlice = await rawRequest(gw.url, `${channel}?timeout=2&token=${alice}`);
      assert.equal(asAlice.status, 200);
      assert.match(asAlice.body, /for-alice/);
    });

    it('closes a stream whose JWT expired, at the next re-authorization', async () => {
      const short = await startGateway('memory', { tokenSecret: SECRET, reauthIntervalMs: 200 });
      try {
        const token = await mint({ alg: 'HS256', key: SECRET, claims: { sub: 'u1', channels: ['/jwt/ticking'] }, times: { exp: 2 } });
        const sse = readSse(short.url, `/jwt/ticking?token=${token}`);
        assert.equal(await sse.status, 200);
        const started = Date.now();
        await sse.closed;
        const lasted = Date.now() - started;
        assert.ok(lasted < 3500, `closed after ${lasted} ms`);
        assert.match(sse.raw(), /: closing \(revoked\)/);
      } finally {
        await short.close();
      }
    });
  });

  describe('RS256, ES256 and EdDSA with --token-public-key', () => {
    const cases = [
      { alg: 'RS256', key: rsa, file: () => keyFile('rsa.pem', pem(rsa.publicKey)), as: 'PEM' },
      { alg: 'ES256', key: ec, file: () => keyFile('ec.jwk', JSON.stringify(jwk(ec.publicKey))), as: 'a JWK' },
      { alg: 'EdDSA', key: ed, file: () => keyFile('ed.pem', pem(ed.publicKey)), as: 'PEM' },
    ] as const;
    for (const c of cases) {
      it(`${c.alg} (key as ${c.as}): SSE over curl and eventsource receives a published message`, async () => {
        const gw = await startGateway('memory', { tokenPublicKey: c.file() });
        try {
          const channel = `/jwt/${c.alg.toLowerCase()}/room`;
          await assertTokenRequired(gw, channel);
          const token = await mint({ alg: c.alg, key: c.key.privateKey, claims: { sub: 'u1', channels: [channel] } });
          assert.match(await curlReceives(gw, channel, token, `curl-${c.alg}`), new RegExp(`data: curl-${c.alg}`));
          // Another subject: curl hung up within a second of its event, which u1's queue therefore keeps for u1 (docs/delivery.md).
          const other = await mint({ alg: c.alg, key: c.key.privateKey, claims: { sub: 'u2', channels: [channel] } });
          assert.equal(await eventSourceReceives(gw, channel, other, `es-${c.alg}`), `es-${c.alg}`);
        } finally {
          await gw.close();
        }
      });
    }

    it("a token minted with Node's jose as docs/app-in-front.md shows", async () => {
      const gw = await startGateway('memory', { tokenPublicKey: keyFile('docs-ec.pem', pem(ec.publicKey)) });
      try {
        await assertTokenRequired(gw, '/live/users/u42/inbox');
        const key = await importPKCS8(ec.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 'ES256');
        const token = await new SignJWT({ channels: ['/live/news', '/live/users/u42/*'] })
          .setProtectedHeader({ alg: 'ES256', kid: '2024-06' })
          .setSubject('u42')
          .setExpirationTime('1h')
          .sign(key);
        assert.equal(await eventSourceReceives(gw, '/live/users/u42/inbox', token, 'minted-with-jose'), 'minted-with-jose');
      } finally {
        await gw.close();
      }
    });

    it('a JWK Set file: each key verifies its own algorithm, chosen by kid', async () => {
      const set = { keys: [jwk(rsa.publicKey, { kid: 'r' }), jwk(ed.publicKey, { kid: 'e' })] };
      const gw = await startGateway('memory', { tokenPublicKey: keyFile('set.json', JSON.stringify(set)) });
      try {
        const claims = { sub: 'u1', channels: ['/jwt/set'] };
        const byEd = await mint({ alg: 'EdDSA', key: ed.privateKey, claims, headers: { kid: 'e' } });
        assert.equal((await sseRefusal(gw, '/jwt/set', byEd)).status, 200);
        const byRsa = await mint({ alg: 'RS256', key: rsa.privateKey, claims, headers: { kid: 'r' } });
        assert.equal((await sseRefusal(gw, '/jwt/set', byRsa)).status, 200);
        // The Ed25519 key under the RSA key's kid, and an ES256 key the set does not hold: refused.
        const mixed = await mint({ alg: 'EdDSA', key: ed.privateKey, claims, headers: { kid: 'r' } });
        assert.deepEqual(await sseRefusal(gw, '/jwt/set', mixed), { status: 401, code: 'INVALID_TOKEN' });
        const byEc = await mint({ alg: 'ES256', key: ec.privateKey, claims });
        assert.deepEqual(await sseRefusal(gw, '/jwt/set', byEc), { status: 401, code: 'INVALID_TOKEN' });
      } finally {
        await gw.close();
      }
    });

    it('refuses a private key, a symmetric JWK and an unsupported curve at start, naming the option', async () => {
      const bad = [
        keyFile('private.pem', rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()),
        keyFile('oct.jwk', JSON.stringify({ kty: 'oct', k: 'c2VjcmV0' })),
        keyFile('p384.pem', pem(generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey)),
        keyFile('garbage.txt', 'not a key'),
      ];
      for (const path of bad) {
        await assert.rejects(startGateway('memory', { tokenPublicKey: path }), /--token-public-key/);
      }
    });
  });

  describe('refusals', () => {
    let gw: TestGateway;
    let both: TestGateway;
    let checked: TestGateway;
    const channel = '/jwt/refused/room';
    const claims = { sub: 'u1', channels: [channel] };
    before(async () => {
      gw = await startGateway('memory', { tokenPublicKey: keyFile('refusals-rsa.pem', pem(rsa.publicKey)) });
      both = await startGateway('memory', { tokenSecret: SECRET, tokenPublicKey: keyFile('both-rsa.pem', pem(rsa.publicKey)) });
      checked = await startGateway('memory', {
        tokenPublicKey: keyFile('checked-ed.pem', pem(ed.publicKey)),
        tokenAudience: 'warren, push',
        tokenIssuer: 'https://idp.example',
      });
    });
    after(() => Promise.all([gw.close(), both.close(), checked.close()]));

    it('accepts the good token (the baseline of the refusals), and none without a token', async () => {
      await assertTokenRequired(gw, channel);
      const token = await mint({ alg: 'RS256', key: rsa.privateKey, claims });
      const sse = readSse(gw.url, `${channel}?token=${token}`);
      assert.equal(await sse.status, 200);
      sse.close();
    });

    it('expired: 401 TOKEN_EXPIRED', async () => {
      const token = await mint({ alg: 'RS256', key: rsa.privateKey, claims, times: { exp: -10 } });
      assert.deepEqual(await sseRefusal(gw, channel, token), { status: 401, code: 'TOKEN_EXPIRED' });
    });

    it('not valid yet (nbf in the future), or without exp: 401 INVALID_TOKEN', async () => {
      const early = await mint({ alg: 'RS256', key: rsa.privateKey, claims, times: { exp: 600, nbf: 300 } });
      assert.deepEqual(await sseRefusal(gw, channel, early), { status: 401, code: 'INVALID_TOKEN' });
      const endless = await mint({ alg: 'RS256', key: rsa.privateKey, claims, times: {} });
      assert.deepEqual(await sseRefusal(gw, channel, endless), { status: 401, code: 'INVALID_TOKEN' });
    });

    it('signed with another key, or tampered: 401 INVALID_TOKEN', async () => {
      const wrong = await mint({ alg: 'RS256', key: otherRsa.privateKey, claims });
      assert.deepEqual(await sseRefusal(gw, channel, wrong), { status: 401, code: 'INVALID_TOKEN' });
      const good = await mint({ alg: 'RS256', key: rsa.privateKey, claims });
      const [head, , sig] = good.split('.');
      const forged = Buffer.from(JSON.stringify({ ...claims, channels: ['/jwt/*'], exp: 9_999_999_999 })).toString('base64url');
      assert.deepEqual(await sseRefusal(gw, channel, `${head}.${forged}.${sig}`), { status: 401, code: 'INVALID_TOKEN' });
      assert.deepEqual(await sseRefusal(gw, channel, 'eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln'), { status: 401, code: 'INVALID_TOKEN' });
    });

    it('a channel the token does not cover: 403 FORBIDDEN', async () => {
      const token = await mint({
        alg: 'RS256',
        key: rsa.privateKey,
        claims: { sub: 'u1', channels: ['/jwt/other', '/jwt/refused/room/*'] },
      });
      assert.deepEqual(await sseRefusal(gw, channel, token), { status: 403, code: 'FORBIDDEN' });
    });

    it('alg none: 401 INVALID_TOKEN', async () => {
      const token = await mint({ alg: 'none', claims });
      assert.match(token, /\.$/, 'an unsecured JWT has an empty signature');
      for (const target of [gw, both]) assert.deepEqual(await sseRefusal(target, channel, token), { status: 401, code: 'INVALID_TOKEN' });
    });

    it("alg confusion: HS256 signed with the public key's PEM bytes is 401 INVALID_TOKEN, with or without a secret", async () => {
      const token = await mint({ alg: 'HS256', key: pem(rsa.publicKey), claims, by_hand: true });
      for (const target of [gw, both]) assert.deepEqual(await sseRefusal(target, channel, token), { status: 401, code: 'INVALID_TOKEN' });
      // The same gateway takes HS256 signed with its secret, and RS256 with the key.
      assert.equal((await sseRefusal(both, channel, await mint({ alg: 'HS256', key: SECRET, claims }))).status, 200);
    });

    it('an algorithm the configured key does not verify (ES256 for an RSA key): 401 INVALID_TOKEN', async () => {
      const token = await mint({ alg: 'ES256', key: ec.privateKey, claims });
      assert.deepEqual(await sseRefusal(gw, channel, token), { status: 401, code: 'INVALID_TOKEN' });
    });

    it('--token-audience and --token-issuer: aud and iss must match', async () => {
      const mintEd = (extra: Record<string, unknown>) => mint({ alg: 'EdDSA', key: ed.privateKey, claims: { ...claims, ...extra } });
      assert.equal((await sseRefusal(checked, channel, await mintEd({ aud: ['push', 'x'], iss: 'https://idp.example' }))).status, 200);
      for (const extra of [
        { aud: 'other', iss: 'https://idp.example' },
        { aud: 'warren', iss: 'https://evil.example' },
        { iss: 'https://idp.example' },
      ]) {
        assert.deepEqual(
          await sseRefusal(checked, channel, await mintEd(extra)),
          { status: 401, code: 'INVALID_TOKEN' },
          JSON.stringify(extra),
        );
      }
    });

    it('a malformed channels claim or sub: 401 INVALID_TOKEN', async () => {
      for (const bad of [
        { channels: [] },
        { channels: 'not-a-list' },
        { channels: ['no-slash'] },
        { sub: 'bad id with spaces', channels: [channel] },
      ]) {
        const token = await mint({ alg: 'RS256', key: rsa.privateKey, claims: bad });
        assert.deepEqual(await sseRefusal(gw, channel, token), { status: 401, code: 'INVALID_TOKEN' }, JSON.stringify(bad));
      }
    });
  });

  describe('--token-jwks-url', () => {
    let jwks: Server;
    let jwksUrl: string;
    let keys: unknown[] = [];
    let fetches = 0;
    let down = false;
    before(async () => {
      jwks = createServer((req, res) => {
        fetches++;
        if (down) {
          res.writeHead(503).end();
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }));
      });
      jwks.listen(0, '127.0.0.1');
      await once(jwks, 'listening');
      jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/.well-known/jwks.json`;
    });
    after(() => jwks.close());

    it('picks up a rotated key (new kid) without a restart, keeps the old one while it is in the set, survives an outage', async () => {
      down = false;
      keys = [jwk(rsa.publicKey, { kid: 'k1', alg: 'RS256', use: 'sig' })];
      const gw = await startGateway('memory', { tokenJwksUrl: jwksUrl, tokenJwksCooldownMs: 300, tokenJwksRefreshMs: 3_600_000 });
      try {
        // Every step reads a channel of its own: the consumers' queues keep what earlier steps published.
        const channel = '/jwt/jwks/room';
        const fresh = () => `/jwt/jwks/${unique('step')}`;
        const claims = { sub: 'u1', channels: ['/jwt/jwks/*'] };
        const k1 = await mint({ alg: 'RS256', key: rsa.privateKey, claims, headers: { kid: 'k1' } });
        const first = await openEventSource(`${gw.url}${channel}?token=${k1}`);
        await httpPublish(gw.url, channel, 'before-rotation');
        assert.equal(await first.next(), 'before-rotation');

        // Rotation: the identity provider adds k2 (Ed25519), and signs with it.
        keys = [...keys, jwk(ed.publicKey, { kid: 'k2' })];
        await new Promise((r) => setTimeout(r, 400)); // past the cooldown of the last fetch
        const before = fetches;
        const k2 = await mint({
          alg: 'EdDSA',
          key: ed.privateKey,
          claims: { sub: 'u2', channels: ['/jwt/jwks/*'] },
          headers: { kid: 'k2' },
        });
        assert.equal(await eventSourceReceives(gw, channel, k2, 'signed-with-k2'), 'signed-with-k2');
        assert.equal(fetches, before + 1, 'the unknown kid made the gateway fetch the set once');
        // The old key still works while it is in the set: the open stream and a new one.
        assert.equal(await first.next(), 'signed-with-k2');
        assert.equal(await eventSourceReceives(gw, fresh(), k1, 'still-k1'), 'still-k1');
        first.close();

        // An unknown kid within the cooldown is refused without a fetch.
        const stranger = generateKeyPairSync('ed25519');
        const k9 = await mint({ alg: 'EdDSA', key: stranger.privateKey, claims, headers: { kid: 'k9' } });
        await sseRefusal(gw, channel, k9); // may fetch once (past the cooldown)
        const quiet = fetches;
        assert.deepEqual(await sseRefusal(gw, channel, k9), { status: 401, code: 'INVALID_TOKEN' });
        assert.equal(fetches, quiet, 'no fetch within the cooldown');

        // Outage: known keys keep working; a key not yet known cannot be checked (502, like an app that is down).
        down = true;
        await new Promise((r) => setTimeout(r, 400));
        const k3 = await mint({ alg: 'ES256', key: ec.privateKey, claims, headers: { kid: 'k3' } });
        assert.deepEqual(await sseRefusal(gw, channel, k3), { status: 502, code: 'UPSTREAM_UNAVAILABLE' });
        assert.equal(await eventSourceReceives(gw, fresh(), k1, 'k1-during-outage'), 'k1-during-outage');
        assert.equal(await eventSourceReceives(gw, fresh(), k2, 'k2-during-outage'), 'k2-during-outage');

        // Back, with k1 retired and k3 added: k3 works, k1 is refused from then on.
        down = false;
        keys = [jwk(ed.publicKey, { kid: 'k2' }), jwk(ec.publicKey, { kid: 'k3' })];
        await new Promise((r) => setTimeout(r, 400));
        assert.equal(await eventSourceReceives(gw, fresh(), k3, 'signed-with-k3'), 'signed-with-k3');
        assert.deepEqual(await sseRefusal(gw, channel, k1), { status: 401, code: 'INVALID_TOKEN' });
      } finally {
        await gw.close();
      }
    });

    it('keeps the known keys when the background refresh fails', async () => {
      down = false;
      keys = [jwk(ec.publicKey, { kid: 'e1' })];
      const gw = await startGateway('memory', { tokenJwksUrl: jwksUrl, tokenJwksRefreshMs: 1000 });
      try {
        const channel = '/jwt/jwks/refresh';
        const token = await mint({ alg: 'ES256', key: ec.privateKey, claims: { sub: 'u1', channels: [channel] }, headers: { kid: 'e1' } });
        assert.equal((await sseRefusal(gw, channel, token)).status, 200);
        down = true;
        const failedFrom = fetches;
        await until(() => fetches >= failedFrom + 2, 'two failed refreshes', 5000);
        assert.equal(await eventSourceReceives(gw, channel, token, 'after-failed-refreshes'), 'after-failed-refreshes');
      } finally {
        down = false;
        await gw.close();
      }
    });
  });

  describe('across gateway processes (RabbitMQ)', () => {
    const exchange = unique('jwt-x-');
    const sub = unique('jwt-u');
    const channel = '/jwt/cluster/room';
    let a: TestGateway;
    let b: TestGateway;
    before(async () => {
      const options = { tokenPublicKey: keyFile('cluster-ed.pem', pem(ed.publicKey)), exchange, queueExpiresMs: 5000 };
      a = await startGateway('rabbitmq', options);
      b = await startGateway('rabbitmq', options);
    });
    after(async () => {
      await Promise.all([a?.close(), b?.close()]);
      const conn = await amqp.connect(AMQP_URL);
      const ch = await conn.createChannel();
      await ch.deleteQueue(consumerQueueName(sub, channel));
      await ch.deleteExchange(exchange);
      await conn.close();
    });

    it('a token any gateway verifies: a stream on one gets what is published through the other', async () => {
      await assertTokenRequired(b, channel);
      const token = await mint({ alg: 'EdDSA', key: ed.privateKey, claims: { sub, channels: [channel] } });
      const source = await openEventSource(`${a.url}${channel}?token=${token}`);
      try {
        assert.equal((await httpPublish(b.url, channel, 'via-b')).status, 200);
        assert.equal(await source.next(), 'via-b');
      } finally {
        source.close();
      }
      assert.equal((await sseRefusal(b, channel, token)).status, 200);
    });
  });
});
