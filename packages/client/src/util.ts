import { WarrenClientError, type TransportName } from './types.js';

const SEGMENT = /^[A-Za-z0-9_~.-]+$/;
const CONSUMER_ID = /^[A-Za-z0-9_-]{1,64}$/;
const MESSAGE_ID = /^[\x21-\x7e]{1,128}$/;
const EVENT_NAME = /^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/;

/** `true` for a wildcard pattern (`/stocks/*`, `/stocks/**`; docs/wildcards.md): no channel holds a `*`. */
export const isPattern = (channel: string): boolean => channel.includes('*');

/**
 * Checks what a subscription names: a channel, or a wildcard pattern (a
 * channel then a last segment `*` or `**`).
 * @throws WarrenClientError `INVALID_CHANNEL`, `INVALID_PATTERN`
 */
export function checkTarget(target: unknown): string {
  if (typeof target !== 'string' || !isPattern(target)) return checkChannel(target);
  const base = target.endsWith('/**') ? target.slice(0, -3) : target.endsWith('/*') ? target.slice(0, -2) : undefined;
  const fail = (why: string): never => {
    throw new WarrenClientError('INVALID_PATTERN', `invalid wildcard pattern: ${why}`);
  };
  if (target.length > 128) return fail('longer than 128 characters');
  if (base === undefined || base.includes('*')) return fail('the wildcard must be the whole last segment: "/stocks/*" or "/stocks/**"');
  try {
    checkChannel(base);
  } catch {
    return fail(`"${base}" before the wildcard is not a valid channel`);
  }
  return target;
}

/** Checks a channel path with the gateway's rules. @throws WarrenClientError `INVALID_CHANNEL` */
export function checkChannel(channel: unknown): string {
  const fail = (why: string): never => {
    throw new WarrenClientError('INVALID_CHANNEL', `invalid channel: ${why}`);
  };
  if (typeof channel !== 'string' || channel.length === 0) return fail('not a non-empty string');
  if (channel.length > 128) return fail('longer than 128 characters');
  if (channel[0] !== '/') return fail('must start with "/"');
  const segments = channel.slice(1).split('/');
  for (const segment of segments) {
    if (segment === '' || segment === '.' || segment === '..') return fail('empty, "." or ".." segment');
    if (!SEGMENT.test(segment)) return fail('only A-Z a-z 0-9 _ ~ . - are allowed in a segment');
  }
  if (segments[0]!.startsWith('_')) return fail('a first segment starting with "_" is reserved');
  return channel;
}

export const isConsumerId = (value: unknown): value is string => typeof value === 'string' && CONSUMER_ID.test(value);
export const isMessageId = (value: unknown): value is string => typeof value === 'string' && MESSAGE_ID.test(value);
export const isEventName = (value: unknown): value is string => typeof value === 'string' && EVENT_NAME.test(value);

/** `c_` and 22 random base64url characters (128 bits), like the gateway's. */
export function generateConsumerId(): string {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return `c_${bytesToBase64(bytes).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')}`;
}

export function bytesToBase64(bytes: Uint8Array): string {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

export function base64ToBytes(base64: string): Uint8Array {
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/**
 * The gateway's rule: content types sent as text over SSE and WebSocket; anything else is binary.
 * A copy of `@warren/protocol`'s `isTextual` (the client imports nothing); test/unit/frames-agree.test.ts checks they agree.
 */
export function isTextual(contentType: string): boolean {
  const type = contentType.split(';', 1)[0]!.trim().toLowerCase();
  return (
    type.startsWith('text/') ||
    type === 'application/json' ||
    type.endsWith('+json') ||
    type === 'application/xml' ||
    type.endsWith('+xml') ||
    type === 'application/javascript' ||
    type === 'application/x-www-form-urlencoded'
  );
}

/** Exponential backoff with full jitter: a random delay in [0, min(maxMs, minMs * 2^attempt)]. */
export function backoffDelay(attempt: number, minMs: number, maxMs: number): number {
  const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.round(Math.random() * ceiling);
}

/** The URL of a path under the gateway's base URL (which may have a path prefix). */
export function gatewayUrl(base: URL, path: string, query: Record<string, string | undefined> = {}, scheme?: 'ws'): string {
  const url = new URL(base.href);
  url.pathname = url.pathname.replace(/\/+$/, '') + path;
  url.search = '';
  url.hash = '';
  for (const [key, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(key, value);
  if (scheme === 'ws') url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export type { TransportName };
