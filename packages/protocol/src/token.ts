/**
 * Signed channel tokens: the alternative to an auth round trip.
 *
 * The application signs, with a secret it shares with the gateway, the
 * channels a consumer may read (and optionally the consumer id) plus an
 * expiry. The gateway checks the token without calling the application.
 *
 * Format (three `.`-separated parts, all URL-safe):
 *
 * ```text
 * v1.<base64url(JSON payload)>.<base64url(HMAC-SHA256(secret, "v1." + payload part))>
 * ```
 *
 * The payload is `{ "sub"?: consumerId, "ch": [grant, ...], "exp": seconds }`
 * (`exp` in seconds since the epoch). A grant is an exact channel
 * (`/rooms/lobby`) or a prefix ending in `/*` (`/users/42/*`); see
 * {@link tokenAllows}. Tokens are signed, not encrypted: anyone holding one
 * can read its claims.
 *
 * @module
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { WarrenError } from './errors.js';
import { isChannel, parseChannel, parseConsumerId } from './names.js';
import { isPattern, parseChannelPattern, patternUnder, type ChannelPattern } from './patterns.js';

/** Longest token {@link verifyChannelToken} accepts, in characters; longer input is refused unread. */
export const MAX_TOKEN_LENGTH = 4096;
/** Most grants (entries of `channels`) one token may carry. */
export const MAX_TOKEN_CHANNELS = 64;
/**
 * Shortest secret, in bytes (a string counts its UTF-8 bytes). HMAC-SHA256
 * is only as strong as its key: a short or guessable secret lets anyone who
 * sees one token brute-force the secret offline and then mint tokens for any
 * channel. Use 32 random bytes, e.g. `randomBytes(32).toString('base64url')`.
 */
export const MIN_SECRET_BYTES = 32;

const VERSION = 'v1';
const SIGNATURE_BYTES = 32;
const BASE64URL = /^[A-Za-z0-9_-]+$/;
const PAYLOAD_KEYS = new Set(['sub', 'ch', 'exp']);
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** What a verified token grants. */
export interface ChannelTokenClaims {
  /** The consumer the token was issued to, when the application bound it to one. */
  consumerId?: string;
  /** Exact channels and `/*` prefixes the holder may read; see {@link tokenAllows}. */
  channels: string[];
  /** When the token stops being valid, in ms since the epoch (a whole second). */
  expiresAt: number;
}

interface ChannelTokenGrant {
  /** Binds the token to this consumer id (checked with `parseConsumerId`). */
  consumerId?: string;
  /**
   * 1 to {@link MAX_TOKEN_CHANNELS} grants: exact channels (`/rooms/lobby`)
   * or prefixes ending in `/*` (`/users/42/*`).
   */
  channels: readonly string[];
}

/**
 * What {@link signChannelToken} signs: the grants plus either an absolute
 * `expiresAt` (ms since the epoch) or a `ttlMs` from now (at least 1000).
 * Expiry has one-second resolution and is rounded down.
 */
export type ChannelTokenInput =
  (ChannelTokenGrant & { expiresAt: number; ttlMs?: never }) | (ChannelTokenGrant & { ttlMs: number; expiresAt?: never });

/** The secret as bytes; a TypeError (never echoing the secret) when unusable. */
function secretKey(secret: string | Uint8Array): Uint8Array {
  let key: Uint8Array;
  if (typeof secret === 'string') key = Buffer.from(secret, 'utf8');
  else if (secret instanceof Uint8Array) key = secret;
  else throw new TypeError('channel token secret must be a string or a Uint8Array');
  if (key.byteLength < MIN_SECRET_BYTES) {
    throw new TypeError(
      `channel token secret must be at least ${MIN_SECRET_BYTES} bytes: a shorter HMAC key can be brute-forced ` +
        'from a single token, letting anyone mint tokens (use 32 random bytes)',
    );
  }
  return key;
}

function sign(key: Uint8Array, signedPart: string): Buffer {
  return createHmac('sha256', key).update(signedPart).digest();
}

/** `true` for a valid grant: an exact channel or a `<channel>/*` prefix (see {@link tokenAllows}). */
export function isTokenGrant(entry: unknown): entry is string {
  if (typeof entry !== 'string') return false;
  return entry.endsWith('/*') ? isChannel(entry.slice(0, -2)) : isChannel(entry);
}

/**
 * Signs a channel token (HMAC-SHA256 with `secret`). Give the token to the
 * consumer; the gateway, configured with the same secret, verifies it with
 * {@link verifyChannelToken}.
 *
 * @param claims the grants and the expiry (`expiresAt` in ms since the epoch, or `ttlMs`).
 * @param secret the shared secret, at least {@link MIN_SECRET_BYTES} bytes.
 * @param now the current time in ms (only used with `ttlMs` and to refuse an already-expired token).
 * @returns the token, at most {@link MAX_TOKEN_LENGTH} characters.
 * @throws TypeError for a short or missing secret or malformed claims;
 *   RangeError for an expiry not in the future, too many grants, or a token
 *   that would exceed {@link MAX_TOKEN_LENGTH};
 *   WarrenError `INVALID_CHANNEL` / `INVALID_CONSUMER_ID` for a bad grant or consumer id.
 * @example
 * signChannelToken({ consumerId: 'u42', channels: ['/rooms/lobby', '/users/42/*'], ttlMs: 3_600_000 }, secret)
 */
export function signChannelToken(claims: ChannelTokenInput, secret: string | Uint8Array, now: number = Date.now()): string {
  const key = secretKey(secret);
  if (typeof claims !== 'object' || claims === null) throw new TypeError('channel token claims must be an object');
  const { consumerId, channels, expiresAt, ttlMs } = claims as {
    consumerId?: unknown;
    channels?: unknown;
    expiresAt?: unknown;
    ttlMs?: unknown;
  };

  if (!Array.isArray(channels)) throw new TypeError('channel token claims: channels must be an array');
  if (channels.length === 0) throw new RangeError('channel token claims: channels must not be empty');
  if (channels.length > MAX_TOKEN_CHANNELS) {
    throw new RangeError(`channel token claims: at most ${MAX_TOKEN_CHANNELS} channels (use a "/*" prefix to cover many)`);
  }
  for (const entry of channels) {
    if (typeof entry === 'string' && entry.endsWith('/*')) parseChannel(entry.slice(0, -2));
    else parseChannel(entry);
  }
  if (consumerId !== undefined) parseConsumerId(consumerId);

  if (!Number.isFinite(now)) throw new TypeError('now must be a finite number of ms');
  let expiryMs: number;
  if (expiresAt !== undefined && ttlMs !== undefined) throw new TypeError('channel token claims: give expiresAt or ttlMs, not both');
  if (expiresAt !== undefined) {
    if (typeof expiresAt !== 'number' || !Number.isFinite(expiresAt))
      throw new TypeError('channel token claims: expiresAt must be ms since the epoch');
    expiryMs = expiresAt;
  } else if (ttlMs !== undefined) {
    if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs)) throw new TypeError('channel token claims: ttlMs must be a number of ms');
    if (ttlMs < 1000) throw new RangeError('channel token claims: ttlMs must be at least 1000 (expiry has one-second resolution)');
    expiryMs = now + ttlMs;
  } else {
    throw new TypeError('channel token claims: expiresAt or ttlMs is required');
  }
  const exp = Math.floor(expiryMs / 1000);
  // Also catches seconds passed where ms are expected.
  if (exp * 1000 <= now) throw new RangeError('channel token claims: the expiry is not in the future (expiresAt is in ms)');
  if (!Number.isSafeInteger(exp)) throw new RangeError('channel token claims: expiry out of range');

  const payload: { sub?: string; ch: string[]; exp: number } =
    consumerId === undefined ? { ch: [...channels], exp } : { sub: consumerId as string, ch: [...channels], exp };
  const signedPart = `${VERSION}.${Buffer.from(JSON.stringify(payload), 'utf8').toString('base64url')}`;
  const token = `${signedPart}.${sign(key, signedPart).toString('base64url')}`;
  if (token.length > MAX_TOKEN_LENGTH) {
    throw new RangeError(`channel token would be longer than ${MAX_TOKEN_LENGTH} characters: grant fewer channels or a "/*" prefix`);
  }
  return token;
}

/**
 * Verifies a channel token and returns its claims. Checks, in order: size,
 * shape and version, the signature (constant-time), the payload, the expiry.
 * Error messages never contain the token or the secret.
 *
 * The caller still decides what the claims mean: check the requested channel
 * with {@link tokenAllows} (refuse with `FORBIDDEN` otherwise) and, when
 * `consumerId` is set, that it is the consumer's id.
 *
 * @param now the current time in ms since the epoch.
 * @throws WarrenError `INVALID_TOKEN` when the token is malformed, oversized
 *   or its signature does not match; `TOKEN_EXPIRED` when `now` is at or past its expiry.
 * @throws TypeError for a short or missing secret.
 */
export function verifyChannelToken(token: string, secret: string | Uint8Array, now: number = Date.now()): ChannelTokenClaims {
  const key = secretKey(secret);
  if (!Number.isFinite(now)) throw new TypeError('now must be a finite number of ms');
  const invalid = (why: string): never => {
    throw new WarrenError('INVALID_TOKEN', `invalid channel token: ${why}`);
  };

  if (typeof token !== 'string' || token.length === 0) return invalid('not a non-empty string');
  if (token.length > MAX_TOKEN_LENGTH) return invalid(`longer than ${MAX_TOKEN_LENGTH} characters`);
  const parts = token.split('.');
  if (parts.length !== 3) return invalid('expected three "."-separated parts');
  const [version, payloadPart, signaturePart] = parts as [string, string, string];
  if (version !== VERSION) return invalid(`unsupported version (expected "${VERSION}")`);
  if (!BASE64URL.test(payloadPart) || !BASE64URL.test(signaturePart)) return invalid('parts must be base64url');

  const given = Buffer.from(signaturePart, 'base64url');
  // The canonical-encoding check keeps signatures non-malleable (no stray trailing bits).
  if (given.length !== SIGNATURE_BYTES || given.toString('base64url') !== signaturePart) return invalid('malformed signature');
  if (!timingSafeEqual(given, sign(key, `${version}.${payloadPart}`))) return invalid('signature does not match');

  let payload: unknown;
  try {
    payload = JSON.parse(utf8.decode(Buffer.from(payloadPart, 'base64url')));
  } catch {
    return invalid('payload is not UTF-8 JSON');
  }
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) return invalid('payload is not an object');
  // Refuse claims we do not understand rather than ignore a restriction.
  if (Object.keys(payload).some((k) => !PAYLOAD_KEYS.has(k))) return invalid('unknown claim in payload');
  const { sub, ch, exp } = payload as { sub?: unknown; ch?: unknown; exp?: unknown };
  if (!Array.isArray(ch) || ch.length === 0 || ch.length > MAX_TOKEN_CHANNELS)
    return invalid(`"ch" must hold 1 to ${MAX_TOKEN_CHANNELS} channels`);
  if (!ch.every(isTokenGrant)) return invalid('"ch" holds an invalid channel or prefix');
  if (typeof exp !== 'number' || !Number.isSafeInteger(exp) || exp <= 0) return invalid('"exp" must be a positive whole number of seconds');
  if (sub !== undefined) {
    try {
      parseConsumerId(sub);
    } catch {
      return invalid('"sub" is not a valid consumer id');
    }
  }

  const expiresAt = exp * 1000;
  if (now >= expiresAt) throw new WarrenError('TOKEN_EXPIRED', 'channel token has expired; get a new one from the application');
  return sub === undefined ? { channels: [...ch], expiresAt } : { consumerId: sub as string, channels: [...ch], expiresAt };
}

/**
 * `true` when the claims cover `channel`. A grant is either an exact channel
 * (`/rooms/lobby` covers only itself) or a prefix ending in `/*`:
 * `/users/42/*` covers `/users/42/inbox` and `/users/42/a/b`, but not
 * `/users/42` itself nor `/users/420/x`. An invalid `channel` and invalid
 * grants never match.
 *
 * A wildcard pattern (`/users/42/*`, `/users/42/**`, docs/wildcards.md) is
 * covered only by a prefix grant that covers every channel it can match:
 * `/users/42/*` covers `/users/42/*` and `/users/42/inbox/**`, `/users/*`
 * covers `/users/42/*`; no exact grant ever covers a pattern.
 */
export function tokenAllows(claims: Pick<ChannelTokenClaims, 'channels'>, channel: string): boolean {
  if (isPattern(channel)) return tokenAllowsPattern(claims, channel);
  if (!isChannel(channel)) return false;
  for (const entry of claims.channels) {
    if (!isTokenGrant(entry)) continue;
    if (entry.endsWith('/*')) {
      const prefix = entry.slice(0, -1); // keeps the trailing "/"
      if (channel.length > prefix.length && channel.startsWith(prefix)) return true;
    } else if (entry === channel) {
      return true;
    }
  }
  return false;
}

/** A wildcard pattern is covered by a prefix grant whose prefix holds every channel it matches. */
function tokenAllowsPattern(claims: Pick<ChannelTokenClaims, 'channels'>, input: string): boolean {
  let pattern: ChannelPattern;
  try {
    pattern = parseChannelPattern(input);
  } catch {
    return false;
  }
  return claims.channels.some((entry) => isTokenGrant(entry) && entry.endsWith('/*') && patternUnder(pattern, entry.slice(0, -1)));
}
