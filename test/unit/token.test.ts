// Signed channel tokens (packages/protocol/src/token.ts): format, signature,
// expiry, size limits, grant semantics, and the producer SDK re-export.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { MAX_TOKEN_CHANNELS, MAX_TOKEN_LENGTH, signChannelToken, tokenAllows, verifyChannelToken, WarrenError } from '@warren/protocol';
import { signChannelToken as producerSignChannelToken } from '@warren/producer';

const SECRET = 'test-secret-0123456789abcdefghijklmnopqrstuvwxyz';
const OTHER_SECRET = 'other-secret-0123456789abcdefghijklmnopqrstuvwxyz';
const NOW = Date.UTC(2030, 0, 1, 12, 0, 0, 250); // not on a whole second
const EXP_S = Math.floor(NOW / 1000) + 3600;

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64url');
const hmac = (secret: string, data: string): string => createHmac('sha256', secret).update(data).digest('base64url');

/** A token built by hand (independently of the module) from any payload. */
function handToken(payload: unknown, { version = 'v1', secret = SECRET, raw = false } = {}): string {
  const part = raw ? b64(payload as string) : b64(JSON.stringify(payload));
  return `${version}.${part}.${hmac(secret, `${version}.${part}`)}`;
}

/** Asserts `fn` throws WarrenError `code` whose message leaks neither the token nor the secret. */
function assertRefused(fn: () => unknown, code: 'INVALID_TOKEN' | 'TOKEN_EXPIRED', token: string, label = ''): void {
  assert.throws(
    fn,
    (err: unknown) => {
      assert.ok(err instanceof WarrenError, `${label}: not a WarrenError: ${String(err)}`);
      assert.equal(err.code, code, `${label}: ${err.message}`);
      assert.equal(err.status, 401);
      assert.ok(!err.message.includes(SECRET), `${label}: message holds the secret`);
      if (token.length >= 8) assert.ok(!err.message.includes(token), `${label}: message holds the token`);
      for (const part of token.split('.'))
        if (part.length >= 8) assert.ok(!err.message.includes(part), `${label}: message holds a token part`);
      return true;
    },
    label,
  );
}

const validToken = (): string =>
  signChannelToken({ consumerId: 'u42', channels: ['/rooms/lobby', '/users/42/*'], expiresAt: EXP_S * 1000 }, SECRET, NOW);

describe('signed channel tokens', () => {
  it('round-trips claims in the documented v1 format', () => {
    const token = validToken();
    const [version, payloadPart, sig] = token.split('.');
    assert.equal(version, 'v1');
    assert.deepEqual(JSON.parse(Buffer.from(payloadPart!, 'base64url').toString('utf8')), {
      sub: 'u42',
      ch: ['/rooms/lobby', '/users/42/*'],
      exp: EXP_S,
    });
    assert.equal(sig, hmac(SECRET, `v1.${payloadPart}`));
    assert.deepEqual(verifyChannelToken(token, SECRET, NOW), {
      consumerId: 'u42',
      channels: ['/rooms/lobby', '/users/42/*'],
      expiresAt: EXP_S * 1000,
    });

    // Without a consumer id, no "sub" and no consumerId; a Uint8Array secret equals its string.
    const anon = signChannelToken({ channels: ['/news'], expiresAt: EXP_S * 1000 + 999 }, Buffer.from(SECRET), NOW);
    assert.equal(anon, handToken({ ch: ['/news'], exp: EXP_S }));
    assert.deepEqual(verifyChannelToken(anon, new TextEncoder().encode(SECRET), NOW), { channels: ['/news'], expiresAt: EXP_S * 1000 });
    // A hand-made token in the documented format verifies too.
    assert.deepEqual(verifyChannelToken(handToken({ sub: 'c_1', ch: ['/a/*'], exp: EXP_S }), SECRET, NOW), {
      consumerId: 'c_1',
      channels: ['/a/*'],
      expiresAt: EXP_S * 1000,
    });
  });

  it('takes ttlMs relative to now, rounded down to the second, and refuses past or ambiguous expiries', () => {
    const claims = verifyChannelToken(signChannelToken({ channels: ['/x'], ttlMs: 60_000 }, SECRET, NOW), SECRET, NOW);
    assert.equal(claims.expiresAt, Math.floor((NOW + 60_000) / 1000) * 1000);
    assert.throws(() => signChannelToken({ channels: ['/x'], ttlMs: 999 }, SECRET, NOW), RangeError);
    assert.throws(() => signChannelToken({ channels: ['/x'], expiresAt: NOW - 1 }, SECRET, NOW), RangeError);
    // Seconds where ms are expected land in 1970: refused.
    assert.throws(() => signChannelToken({ channels: ['/x'], expiresAt: EXP_S }, SECRET, NOW), RangeError);
    assert.throws(() => signChannelToken({ channels: ['/x'], expiresAt: EXP_S * 1000, ttlMs: 1000 } as never, SECRET, NOW), TypeError);
    assert.throws(() => signChannelToken({ channels: ['/x'] } as never, SECRET, NOW), TypeError);
  });

  it('is TOKEN_EXPIRED from the expiry on, and only with a valid signature', () => {
    const token = validToken();
    assert.equal(verifyChannelToken(token, SECRET, EXP_S * 1000 - 1).expiresAt, EXP_S * 1000);
    assertRefused(() => verifyChannelToken(token, SECRET, EXP_S * 1000), 'TOKEN_EXPIRED', token, 'at exp');
    assertRefused(() => verifyChannelToken(token, SECRET, EXP_S * 1000 + 86_400_000), 'TOKEN_EXPIRED', token, 'a day later');
    // Default `now` is the clock: a token that expired in 2001 is refused without passing now.
    const old = handToken({ ch: ['/x'], exp: 1_000_000_000 });
    assertRefused(() => verifyChannelToken(old, SECRET), 'TOKEN_EXPIRED', old, 'default now');
    // An expired token with a bad signature is INVALID, not EXPIRED (no oracle for forgers).
    const forged = handToken({ ch: ['/x'], exp: 1_000_000_000 }, { secret: OTHER_SECRET });
    assertRefused(() => verifyChannelToken(forged, SECRET, NOW), 'INVALID_TOKEN', forged, 'expired forgery');
  });

  it('refuses a tampered payload', () => {
    const token = validToken();
    const [v, , sig] = token.split('.');
    const widened = `${v}.${b64(JSON.stringify({ sub: 'u42', ch: ['/rooms/lobby', '/users/*'], exp: EXP_S }))}.${sig}`;
    assertRefused(() => verifyChannelToken(widened, SECRET, NOW), 'INVALID_TOKEN', widened, 'widened channels');
    const extended = `${v}.${b64(JSON.stringify({ sub: 'u42', ch: ['/rooms/lobby', '/users/42/*'], exp: EXP_S + 86_400 }))}.${sig}`;
    assertRefused(() => verifyChannelToken(extended, SECRET, NOW), 'INVALID_TOKEN', extended, 'extended expiry');
    const parts = token.split('.');
    const flipped = `${parts[0]}.${parts[1]!.slice(0, 5)}${parts[1]![5] === 'A' ? 'B' : 'A'}${parts[1]!.slice(6)}.${parts[2]}`;
    assertRefused(() => verifyChannelToken(flipped, SECRET, NOW), 'INVALID_TOKEN', flipped, 'flipped payload char');
  });

  it('refuses a tampered signature and a wrong secret', () => {
    const token = validToken();
    const [v, p, sig] = token.split('.') as [string, string, string];
    const flip = (s: string, i: number): string => `${s.slice(0, i)}${s[i] === 'A' ? 'B' : 'A'}${s.slice(i + 1)}`;
    for (const [label, bad] of [
      ['first char', `${v}.${p}.${flip(sig, 0)}`],
      ['middle char', `${v}.${p}.${flip(sig, 20)}`],
      ['truncated', `${v}.${p}.${sig.slice(0, -1)}`],
      ['extended', `${v}.${p}.${sig}A`],
      ['empty', `${v}.${p}.`],
      [
        'swapped for another token',
        `${v}.${p}.${signChannelToken({ channels: ['/x'], expiresAt: EXP_S * 1000 }, SECRET, NOW).split('.')[2]}`,
      ],
    ] as const) {
      assertRefused(() => verifyChannelToken(bad, SECRET, NOW), 'INVALID_TOKEN', bad, label);
    }
    // The last signature char carries 2 unused bits: a non-canonical variant is refused.
    const last = sig[sig.length - 1]!;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const sibling = alphabet[alphabet.indexOf(last) ^ 1]!;
    assert.deepEqual(Buffer.from(sig.slice(0, -1) + sibling, 'base64url'), Buffer.from(sig, 'base64url'));
    const malleable = `${v}.${p}.${sig.slice(0, -1)}${sibling}`;
    assertRefused(() => verifyChannelToken(malleable, SECRET, NOW), 'INVALID_TOKEN', malleable, 'non-canonical signature');

    assertRefused(() => verifyChannelToken(token, OTHER_SECRET, NOW), 'INVALID_TOKEN', token, 'wrong secret');
    assertRefused(() => verifyChannelToken(token, `${SECRET}x`, NOW), 'INVALID_TOKEN', token, 'longer secret');
  });

  it('refuses any version but v1, even correctly signed', () => {
    const payload = { sub: 'u42', ch: ['/rooms/lobby'], exp: EXP_S };
    assert.equal(verifyChannelToken(handToken(payload), SECRET, NOW).consumerId, 'u42');
    for (const version of ['v2', 'V1', 'v0', '', 'v1 ']) {
      const token = handToken(payload, { version });
      assertRefused(() => verifyChannelToken(token, SECRET, NOW), 'INVALID_TOKEN', token, `version ${JSON.stringify(version)}`);
    }
  });

  it('refuses garbage, and signed payloads that break the claim rules', () => {
    for (const garbage of ['', 'abc', 'v1', 'v1.', 'v1..', 'v1.a.b.c', 'v1.!!!!.????', '...', 'v1.eyJ9.eyJ9', validToken() + '.']) {
      assertRefused(() => verifyChannelToken(garbage, SECRET, NOW), 'INVALID_TOKEN', garbage, JSON.stringify(garbage));
    }
    for (const notString of [undefined, null, 42, {}, ['v1', 'a', 'b']]) {
      assertRefused(() => verifyChannelToken(notString as unknown as string, SECRET, NOW), 'INVALID_TOKEN', '', String(notString));
    }
    const tooMany = Array.from({ length: MAX_TOKEN_CHANNELS + 1 }, (_, i) => `/c${i}`);
    const cases: Array<[string, string]> = [
      ['not JSON', handToken('{"ch":', { raw: true })],
      [
        'not UTF-8',
        `v1.${Buffer.from([0x7b, 0xff, 0x7d]).toString('base64url')}.${hmac(SECRET, `v1.${Buffer.from([0x7b, 0xff, 0x7d]).toString('base64url')}`)}`,
      ],
      ['JSON null', handToken(null)],
      ['array', handToken([{ ch: ['/x'], exp: EXP_S }])],
      ['no ch', handToken({ exp: EXP_S })],
      ['empty ch', handToken({ ch: [], exp: EXP_S })],
      ['ch not array', handToken({ ch: '/x', exp: EXP_S })],
      ['too many ch', handToken({ ch: tooMany, exp: EXP_S })],
      ['invalid channel', handToken({ ch: ['/a b'], exp: EXP_S })],
      ['reserved channel', handToken({ ch: ['/_warren/*'], exp: EXP_S })],
      ['root wildcard', handToken({ ch: ['/*'], exp: EXP_S })],
      ['inner wildcard', handToken({ ch: ['/users/*/inbox'], exp: EXP_S })],
      ['non-string channel', handToken({ ch: [42], exp: EXP_S })],
      ['no exp', handToken({ ch: ['/x'] })],
      ['string exp', handToken({ ch: ['/x'], exp: String(EXP_S) })],
      ['fractional exp', handToken({ ch: ['/x'], exp: EXP_S + 0.5 })],
      ['bad sub', handToken({ sub: 'u 42', ch: ['/x'], exp: EXP_S })],
      ['numeric sub', handToken({ sub: 42, ch: ['/x'], exp: EXP_S })],
      ['unknown claim', handToken({ ch: ['/x'], exp: EXP_S, admin: true })],
    ];
    for (const [label, token] of cases) assertRefused(() => verifyChannelToken(token, SECRET, NOW), 'INVALID_TOKEN', token, label);
  });

  it('refuses oversized tokens unread, and never signs one', () => {
    const longChannel = (i: number): string => `/${String(i).padStart(3, '0')}${'a'.repeat(100)}`;
    // Correctly signed, otherwise valid, just over the limit: refused by size alone.
    let n = 1;
    while (handToken({ ch: Array.from({ length: n }, (_, i) => longChannel(i)), exp: EXP_S }).length <= MAX_TOKEN_LENGTH) n++;
    const fits = handToken({ ch: Array.from({ length: n - 1 }, (_, i) => longChannel(i)), exp: EXP_S });
    const over = handToken({ ch: Array.from({ length: n }, (_, i) => longChannel(i)), exp: EXP_S });
    assert.ok(n <= MAX_TOKEN_CHANNELS);
    assert.equal(verifyChannelToken(fits, SECRET, NOW).channels.length, n - 1);
    assertRefused(() => verifyChannelToken(over, SECRET, NOW), 'INVALID_TOKEN', over, 'signed but oversized');
    const huge = 'v1.' + 'A'.repeat(1_000_000) + '.' + 'A'.repeat(43);
    assertRefused(() => verifyChannelToken(huge, SECRET, NOW), 'INVALID_TOKEN', huge, '1 MB');

    assert.throws(
      () => signChannelToken({ channels: Array.from({ length: n }, (_, i) => longChannel(i)), expiresAt: EXP_S * 1000 }, SECRET, NOW),
      RangeError,
    );
    const many = Array.from({ length: MAX_TOKEN_CHANNELS + 1 }, (_, i) => `/c${i}`);
    assert.throws(() => signChannelToken({ channels: many, expiresAt: EXP_S * 1000 }, SECRET, NOW), RangeError);
    assert.equal(
      verifyChannelToken(signChannelToken({ channels: many.slice(1), expiresAt: EXP_S * 1000 }, SECRET, NOW), SECRET, NOW).channels.length,
      MAX_TOKEN_CHANNELS,
    );
  });

  it('validates grants and the consumer id when signing', () => {
    const sign = (claims: Record<string, unknown>): string =>
      signChannelToken({ expiresAt: EXP_S * 1000, ...claims } as never, SECRET, NOW);
    for (const bad of ['/*', 'rooms', '/rooms/', '/users/*/inbox', '/users/4*', '/users/42/**', '/_warren/*', '/a b', '', 42]) {
      assert.throws(
        () => sign({ channels: [bad] }),
        (e: unknown) => e instanceof WarrenError && e.code === 'INVALID_CHANNEL',
        JSON.stringify(bad),
      );
    }
    assert.throws(() => sign({ channels: [] }), RangeError);
    assert.throws(() => sign({ channels: '/x' }), TypeError);
    for (const bad of ['', 'u 42', 'a'.repeat(65), 42]) {
      assert.throws(
        () => sign({ consumerId: bad, channels: ['/x'] }),
        (e: unknown) => e instanceof WarrenError && e.code === 'INVALID_CONSUMER_ID',
        JSON.stringify(bad),
      );
    }
  });

  it('tokenAllows: exact channels and /* prefixes', () => {
    const claims = { channels: ['/rooms/lobby', '/users/42/*'] };
    for (const yes of ['/rooms/lobby', '/users/42/inbox', '/users/42/a/b/c']) assert.equal(tokenAllows(claims, yes), true, yes);
    for (const no of [
      '/rooms',
      '/rooms/lobby/x',
      '/rooms/lobby2',
      '/users/42',
      '/users/420/x',
      '/users/4',
      '/users/42/',
      '/users/4*',
      '/users/*',
      '/users/42//x',
      '/users/42/../x',
      '/users',
      '/other',
      '',
    ]) {
      assert.equal(tokenAllows(claims, no), false, no);
    }
    // A pattern (docs/wildcards.md) is covered by a prefix grant holding all it can match (more in patterns.test.ts).
    assert.equal(tokenAllows(claims, '/users/42/*'), true);
    // Claims straight from verification behave the same.
    const verified = verifyChannelToken(validToken(), SECRET, NOW);
    assert.equal(tokenAllows(verified, '/users/42/inbox'), true);
    assert.equal(tokenAllows(verified, '/users/42'), false);
    assert.equal(tokenAllows(verified, '/users/420/x'), false);
    // Invalid hand-made grants match nothing.
    assert.equal(tokenAllows({ channels: ['/*'] }, '/rooms/lobby'), false);
    assert.equal(tokenAllows({ channels: ['/users/*/inbox'] }, '/users/42/inbox'), false);
    assert.equal(tokenAllows({ channels: [] }, '/rooms/lobby'), false);
  });

  it('refuses secrets shorter than 32 bytes, when signing and when verifying', () => {
    const claims = { channels: ['/x'], expiresAt: EXP_S * 1000 };
    const short = 'a'.repeat(31);
    const token = validToken();
    for (const secret of [short, Buffer.alloc(31), new Uint8Array(0), '']) {
      assert.throws(
        () => signChannelToken(claims, secret, NOW),
        (e: unknown) => e instanceof TypeError && /32 bytes/.test(e.message) && !e.message.includes(short),
      );
      assert.throws(
        () => verifyChannelToken(token, secret, NOW),
        (e: unknown) => e instanceof TypeError && /32 bytes/.test(e.message),
      );
    }
    assert.throws(() => signChannelToken(claims, undefined as never, NOW), TypeError);
    // 32 bytes is enough, counted in UTF-8 bytes (16 two-byte characters).
    const exact = 'a'.repeat(32);
    assert.equal(verifyChannelToken(signChannelToken(claims, exact, NOW), exact, NOW).channels[0], '/x');
    const multibyte = 'é'.repeat(16);
    assert.equal(verifyChannelToken(signChannelToken(claims, multibyte, NOW), multibyte, NOW).channels[0], '/x');
    assert.throws(() => signChannelToken(claims, 'é'.repeat(15) + 'a', NOW), TypeError);
  });

  it('the producer SDK re-exports the signing helper', () => {
    assert.equal(typeof producerSignChannelToken, 'function');
    assert.equal(producerSignChannelToken, signChannelToken);
    const token = producerSignChannelToken({ consumerId: 'u1', channels: ['/users/1/*'], ttlMs: 60_000 }, SECRET, NOW);
    assert.ok(tokenAllows(verifyChannelToken(token, SECRET, NOW), '/users/1/inbox'));
  });
});
