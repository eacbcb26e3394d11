/**
 * The channel tokens a gateway accepts: Warren's own `v1` HMAC tokens, and
 * standard JWTs: HS256 with the shared secret, RS256, ES256 and EdDSA with
 * a public key (a file) or the keys of a JWK Set (a URL, cached).
 *
 * Both kinds carry the same grants: the consumer (`sub`), the channels and
 * prefixes (`ch` in a `v1` token, `channels` in a JWT) and the expiry. Both
 * are checked without state, so that any gateway process takes a token any
 * other took.
 *
 * @module
 */
import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  errors,
  jwtVerify,
  type FetchImplementation,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import {
  isTokenGrant,
  MAX_TOKEN_CHANNELS,
  MAX_TOKEN_LENGTH,
  parseConsumerId,
  verifyChannelToken,
  WarrenError,
  type ChannelTokenClaims,
} from '@warren/protocol';
import type { Logger } from './logger.js';
import { OptionError, parseList, type NormalizedOptions } from './options.js';

/** The JWT algorithms a public key or a JWK Set may verify; HS256 is the shared secret's alone. */
export const ASYMMETRIC_ALGORITHMS = ['RS256', 'ES256', 'EdDSA'] as const;
type AsymmetricAlgorithm = (typeof ASYMMETRIC_ALGORITHMS)[number];

/** Largest JWK Set (file or response) read, in bytes. */
const MAX_JWKS_BYTES = 1024 * 1024;
/** Most keys a JWK Set file may hold. */
const MAX_JWKS_KEYS = 100;
/** Longest wait for the JWK Set URL to answer. */
const JWKS_TIMEOUT_MS = 5_000;
const SMALLEST_RSA_BITS = 2048;

const PUBLIC_KEY_NAME = '--token-public-key / WARREN_TOKEN_PUBLIC_KEY / tokenPublicKey';

type TokenOptions = Pick<
  NormalizedOptions,
  'tokenSecret' | 'tokenPublicKey' | 'tokenJwksUrl' | 'tokenJwksRefreshMs' | 'tokenJwksCooldownMs' | 'tokenAudience' | 'tokenIssuer'
>;

/** Where the keys of asymmetric JWTs come from. */
type PublicKeys =
  | { kind: 'key'; key: KeyObject; algorithm: AsymmetricAlgorithm }
  | { kind: 'set'; getKey: JWTVerifyGetKey }
  | { kind: 'remote'; getKey: JWTVerifyGetKey; reload(): Promise<void>; url: string };

/**
 * Verifies the tokens subscriptions carry (`?token=`, `Authorization: Bearer`).
 * Built once per gateway from the options; {@link start} begins fetching a
 * JWK Set, {@link close} stops its refresh.
 */
export class ChannelTokens {
  /** Whether any kind of token can be verified (then subscriptions without one need the app, or are refused). */
  readonly enabled: boolean;
  private readonly secret: string | undefined;
  private readonly secretBytes: Uint8Array | undefined;
  private readonly keys: PublicKeys | undefined;
  private readonly algorithms: string[];
  private readonly audience: string[] | undefined;
  private refresh: NodeJS.Timeout | undefined;

  /** @throws OptionError for a public key file that cannot be read or used */
  constructor(
    private readonly options: TokenOptions,
    private readonly log: Logger,
  ) {
    this.secret = options.tokenSecret;
    this.secretBytes = options.tokenSecret === undefined ? undefined : Buffer.from(options.tokenSecret, 'utf8');
    if (options.tokenPublicKey !== undefined) this.keys = readPublicKeys(options.tokenPublicKey);
    else if (options.tokenJwksUrl !== undefined) this.keys = remoteKeys(options.tokenJwksUrl, options.tokenJwksCooldownMs, log);
    this.algorithms = [
      ...(this.secretBytes === undefined ? [] : ['HS256']),
      ...(this.keys === undefined ? [] : this.keys.kind === 'key' ? [this.keys.algorithm] : ASYMMETRIC_ALGORITHMS),
    ];
    this.audience = options.tokenAudience === undefined ? undefined : parseList(options.tokenAudience);
    this.enabled = this.algorithms.length > 0;
  }

  /** Fetches the JWK Set now (a failure is logged: tokens fetch it again) and again every `tokenJwksRefreshMs`. */
  start(): void {
    const keys = this.keys;
    if (keys?.kind !== 'remote' || this.refresh !== undefined) return;
    const fetchKeys = (): void => {
      keys.reload().catch((err: unknown) => {
        this.log.warn('JWK Set fetch failed; the keys already known stay in use', { url: keys.url, error: describeError(err) });
      });
    };
    fetchKeys();
    this.refresh = setInterval(fetchKeys, this.options.tokenJwksRefreshMs);
    this.refresh.unref();
  }

  close(): void {
    clearInterval(this.refresh);
  }

  /**
   * The grants of a `v1` token or a JWT.
   * @throws WarrenError `INVALID_TOKEN` (malformed, bad signature, an algorithm
   *   or a key this gateway does not take, a claim that does not check),
   *   `TOKEN_EXPIRED`, `UPSTREAM_UNAVAILABLE` (a JWT naming a key the JWK
   *   Set did not hold, while the set cannot be fetched)
   */
  async verify(token: string): Promise<ChannelTokenClaims> {
    if (token.length === 0) throw invalid('empty');
    if (token.length > MAX_TOKEN_LENGTH) throw invalid(`longer than ${MAX_TOKEN_LENGTH} characters`);
    if (token.startsWith('v1.')) {
      if (this.secret === undefined) throw invalid('a v1 token needs --token-secret, which this gateway does not have');
      return verifyChannelToken(token, this.secret);
    }
    if (!this.enabled) throw invalid('this gateway verifies no JWTs');
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.getKey, {
        algorithms: this.algorithms,
        requiredClaims: ['exp'],
        ...(this.audience === undefined ? {} : { audience: this.audience }),
        ...(this.options.tokenIssuer === undefined ? {} : { issuer: this.options.tokenIssuer }),
      }));
    } catch (err) {
      throw jwtError(err);
    }
    return grantsOf(payload);
  }

  /** The key for a JWT's header: `alg` was already checked against {@link algorithms}. */
  private readonly getKey: JWTVerifyGetKey = (header, jws) => {
    // HS256 never reaches a public key (no alg confusion), and no other alg reaches the secret.
    if (header.alg === 'HS256') return this.secretBytes!;
    const keys = this.keys!;
    return keys.kind === 'key' ? keys.key : keys.getKey(header, jws);
  };
}

function invalid(why: string): WarrenError {
  return new WarrenError('INVALID_TOKEN', `invalid channel token: ${why}`);
}

/** A jose error as Warren's: messages say what failed, never echo the token. */
function jwtError(err: unknown): WarrenError {
  if (err instanceof WarrenError) return err;
  if (err instanceof errors.JWTExpired) {
    return new WarrenError('TOKEN_EXPIRED', 'channel token has expired; get a new one from the application');
  }
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf') return invalid('not valid yet ("nbf" is in the future)');
    if (err.reason === 'missing') return invalid(`the "${err.claim}" claim is missing`);
    return invalid(`the "${err.claim}" claim does not check`);
  }
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) {
    return invalid('its "alg" is not one this gateway accepts');
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return invalid('signature does not match');
  if (err instanceof errors.JWKSNoMatchingKey) return invalid('no key of this gateway matches its "kid" and "alg"');
  return invalid('not a well-formed JWT');
}

/** The grants of a verified JWT's claims: `sub`, `channels`, `exp`. */
function grantsOf(payload: JWTPayload): ChannelTokenClaims {
  const { sub, channels, exp } = payload as { sub?: unknown; channels?: unknown; exp?: unknown };
  if (!Array.isArray(channels) || channels.length === 0 || channels.length > MAX_TOKEN_CHANNELS) {
    throw invalid(`"channels" must hold 1 to ${MAX_TOKEN_CHANNELS} channels`);
  }
  if (!channels.every(isTokenGrant)) throw invalid('"channels" holds an invalid channel or prefix');
  if (sub !== undefined) {
    try {
      parseConsumerId(sub);
    } catch {
      throw invalid('"sub" is not a valid consumer id');
    }
  }
  const expiresAt = Math.floor((exp as number) * 1000);
  return sub === undefined ? { channels: [...channels], expiresAt } : { consumerId: sub as string, channels: [...channels], expiresAt };
}

/**
 * The keys of `--token-public-key`: one key (PEM or a JWK, used whatever
 * `kid` a token names) or a JWK Set (chosen by `kid`).
 * @throws OptionError for a file that cannot be read, or a key that is private, symmetric or of another kind
 */
function readPublicKeys(path: string): PublicKeys {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new OptionError(`${PUBLIC_KEY_NAME}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  const fail = (why: string): never => {
    throw new OptionError(`${PUBLIC_KEY_NAME}: ${path} ${why}`);
  };
  if (text.length > MAX_JWKS_BYTES) fail(`is larger than ${MAX_JWKS_BYTES} bytes`);
  if (/PRIVATE KEY-----/.test(text)) fail('holds a private key: give the gateway the public key only (openssl pkey -pubout)');
  if (/-----BEGIN PUBLIC KEY-----/.test(text)) {
    let key: KeyObject;
    try {
      key = createPublicKey(text);
    } catch (err) {
      return fail(`holds no usable PEM public key (${(err as Error).message})`);
    }
    return { kind: 'key', key, algorithm: algorithmOf(key, fail) };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return fail('holds neither a PEM public key (-----BEGIN PUBLIC KEY-----) nor a JWK or JWK Set (JSON)');
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return fail('holds JSON that is not a JWK or a JWK Set');
  if (!('keys' in json)) {
    const { key, algorithm } = checkJwk(json as JsonWebKey, fail);
    return { kind: 'key', key, algorithm };
  }
  const list = (json as { keys: unknown }).keys;
  if (!Array.isArray(list) || list.length === 0 || list.length > MAX_JWKS_KEYS) fail(`holds a JWK Set without 1 to ${MAX_JWKS_KEYS} keys`);
  const keys = (list as unknown[]).map((jwk, i) => {
    if (typeof jwk !== 'object' || jwk === null) return fail(`has a key ${i} that is not a JWK`);
    const { algorithm } = checkJwk(jwk as JsonWebKey, (why) => fail(`key ${i}: ${why}`));
    // Pinned: a key verifies the one algorithm its type fits.
    return { ...(jwk as JsonWebKey), alg: algorithm };
  });
  return { kind: 'set', getKey: createLocalJWKSet({ keys: keys as never }) };
}

/** A JWK's public key and the algorithm it verifies. @throws through `fail` */
function checkJwk(jwk: JsonWebKey, fail: (why: string) => never): { key: KeyObject; algorithm: AsymmetricAlgorithm } {
  if (jwk.kty === 'oct') fail('holds a symmetric key: give HS256 secrets with --token-secret');
  if (jwk.d !== undefined) fail('holds a private key: give the gateway the public key only');
  let key: KeyObject;
  try {
    key = createPublicKey({ key: jwk, format: 'jwk' });
  } catch (err) {
    return fail(`holds no usable JWK (${(err as Error).message})`);
  }
  const algorithm = algorithmOf(key, fail);
  if (jwk.alg !== undefined && jwk.alg !== algorithm) fail(`names "alg" ${JSON.stringify(jwk.alg)}; this key verifies ${algorithm} only`);
  if (jwk.use !== undefined && jwk.use !== 'sig') fail(`has "use" ${JSON.stringify(jwk.use)}, not "sig"`);
  return { key, algorithm };
}

/** The one algorithm a key verifies: RSA → RS256, P-256 → ES256, Ed25519 → EdDSA. @throws through `fail` */
function algorithmOf(key: KeyObject, fail: (why: string) => never): AsymmetricAlgorithm {
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'rsa':
      if ((details.modulusLength ?? 0) < SMALLEST_RSA_BITS) fail(`holds an RSA key shorter than ${SMALLEST_RSA_BITS} bits`);
      return 'RS256';
    case 'ec':
      if (details.namedCurve !== 'prime256v1') fail(`holds an EC key on ${details.namedCurve ?? 'an unknown curve'}; ES256 takes P-256`);
      return 'ES256';
    case 'ed25519':
      return 'EdDSA';
    default:
      return fail(`holds a ${key.asymmetricKeyType ?? 'non-asymmetric'} key; RSA (RS256), P-256 (ES256) or Ed25519 (EdDSA) keys are taken`);
  }
}

/**
 * The keys of a JWK Set URL. jose keeps the set and fetches it again when a
 * token names a `kid` it does not hold (at most once per `cooldownMs`);
 * the set never goes stale by itself ({@link ChannelTokens.start} refreshes
 * it in the background), so a failed fetch leaves the known keys working.
 */
function remoteKeys(url: string, cooldownMs: number, log: Logger): PublicKeys {
  const where = new URL(url);
  const shown = `${where.origin}${where.pathname}`;
  const remote = createRemoteJWKSet(where, {
    cacheMaxAge: Infinity,
    cooldownDuration: cooldownMs,
    timeoutDuration: JWKS_TIMEOUT_MS,
    [customFetch]: boundedFetch,
  });
  const getKey: JWTVerifyGetKey = async (header, jws) => {
    try {
      return await remote(header, jws);
    } catch (err) {
      // Those are about the token; anything else is the fetch of the set.
      if (
        err instanceof errors.JWKSNoMatchingKey ||
        err instanceof errors.JWKSMultipleMatchingKeys ||
        err instanceof errors.JOSENotSupported
      ) {
        throw err;
      }
      log.warn('JWK Set fetch failed for a token naming a key not yet known', { url: shown, error: describeError(err) });
      throw new WarrenError('UPSTREAM_UNAVAILABLE', 'the JWK Set that holds the key of this token cannot be fetched right now');
    }
  };
  return { kind: 'remote', getKey, reload: () => remote.reload(), url: shown };
}

/** fetch, refusing a JWK Set larger than {@link MAX_JWKS_BYTES}. */
const boundedFetch: FetchImplementation = async (url, init) => {
  const res = await fetch(url, init);
  if (res.body === null) return res;
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > MAX_JWKS_BYTES) throw new Error(`the JWK Set is larger than ${MAX_JWKS_BYTES} bytes`);
    chunks.push(chunk);
  }
  return new Response(Buffer.concat(chunks), { status: res.status, headers: res.headers });
};

function describeError(err: unknown): string {
  const cause = (err as { cause?: unknown }).cause;
  const message = err instanceof Error ? err.message : String(err);
  return cause instanceof Error ? `${message} (${cause.message})` : message;
}
