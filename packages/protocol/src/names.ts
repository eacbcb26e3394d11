import { randomBytes, randomUUID } from 'node:crypto';
import { WarrenError } from './errors.js';

/** Longest channel path, in bytes (ASCII only, so characters). */
export const MAX_CHANNEL_LENGTH = 128;
/** Longest consumer id. */
export const MAX_CONSUMER_ID_LENGTH = 64;
/** Longest message id. */
export const MAX_MESSAGE_ID_LENGTH = 128;
/** Longest event name. */
export const MAX_EVENT_NAME_LENGTH = 64;
/** Longest content type. */
export const MAX_CONTENT_TYPE_LENGTH = 128;

// A segment: unreserved URL characters only, so a channel never needs
// percent-encoding and never holds an AMQP topic wildcard (`*`, `#`).
const SEGMENT = /^[A-Za-z0-9_~.-]+$/;
const CONSUMER_ID = /^[A-Za-z0-9_-]+$/;
// Visible ASCII: no space, no CR/LF, no control characters (SSE-safe).
const MESSAGE_ID = /^[\x21-\x7e]+$/;
const EVENT_NAME = /^[A-Za-z][A-Za-z0-9_.:-]*$/;
const CONTENT_TYPE =
  /^[A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=("[\x20-\x21\x23-\x7e]*"|[A-Za-z0-9!#$&^_.+-]+))*$/;

/**
 * Checks a channel path and returns it. A channel is an absolute path:
 * `/` followed by one or more segments separated by `/`, each made of
 * `A-Z a-z 0-9 _ ~ . -`; no empty, `.` or `..` segment; the first segment
 * may not start with `_` (reserved for the gateway, e.g. `/_warren/...`);
 * at most {@link MAX_CHANNEL_LENGTH} characters.
 *
 * @throws WarrenError `INVALID_CHANNEL`
 * @example parseChannel('/rooms/lobby') // '/rooms/lobby'
 */
export function parseChannel(input: unknown): string {
  const fail = (why: string): never => {
    throw new WarrenError('INVALID_CHANNEL', `invalid channel: ${why}`);
  };
  if (typeof input !== 'string') return fail('not a string');
  if (input.length === 0) return fail('empty');
  if (input.length > MAX_CHANNEL_LENGTH) return fail(`longer than ${MAX_CHANNEL_LENGTH} characters`);
  if (input[0] !== '/') return fail('must start with "/"');
  const segments = input.slice(1).split('/');
  for (const segment of segments) {
    if (segment === '') return fail('empty segment (a trailing "/" or "//")');
    if (segment === '.' || segment === '..') return fail('"." and ".." segments are not allowed');
    if (!SEGMENT.test(segment)) return fail('only A-Z a-z 0-9 _ ~ . - are allowed in a segment');
  }
  if (segments[0]!.startsWith('_')) return fail('a first segment starting with "_" is reserved');
  return input;
}

/**
 * Checks a consumer id: 1 to {@link MAX_CONSUMER_ID_LENGTH} characters of
 * `A-Z a-z 0-9 _ -`.
 *
 * @throws WarrenError `INVALID_CONSUMER_ID`
 */
export function parseConsumerId(input: unknown): string {
  if (typeof input !== 'string' || input.length === 0 || input.length > MAX_CONSUMER_ID_LENGTH || !CONSUMER_ID.test(input)) {
    throw new WarrenError('INVALID_CONSUMER_ID', `invalid consumer id: 1 to ${MAX_CONSUMER_ID_LENGTH} characters of A-Z a-z 0-9 _ -`);
  }
  return input;
}

/** A fresh consumer id: `c_` and 22 random URL-safe characters (128 bits). */
export function generateConsumerId(): string {
  return `c_${randomBytes(16).toString('base64url')}`;
}

/**
 * Checks a message id: 1 to {@link MAX_MESSAGE_ID_LENGTH} visible ASCII
 * characters (no space, CR or LF).
 *
 * @throws WarrenError `INVALID_MESSAGE_ID`
 */
export function parseMessageId(input: unknown): string {
  if (typeof input !== 'string' || input.length === 0 || input.length > MAX_MESSAGE_ID_LENGTH || !MESSAGE_ID.test(input)) {
    throw new WarrenError('INVALID_MESSAGE_ID', `invalid message id: 1 to ${MAX_MESSAGE_ID_LENGTH} visible ASCII characters`);
  }
  return input;
}

/** A fresh message id (a random UUID). */
export function generateMessageId(): string {
  return randomUUID();
}

/**
 * Checks an event name: a letter, then up to {@link MAX_EVENT_NAME_LENGTH}
 * - 1 characters of `A-Z a-z 0-9 _ . : -`.
 *
 * @throws WarrenError `INVALID_EVENT_NAME`
 */
export function parseEventName(input: unknown): string {
  if (typeof input !== 'string' || input.length === 0 || input.length > MAX_EVENT_NAME_LENGTH || !EVENT_NAME.test(input)) {
    throw new WarrenError(
      'INVALID_EVENT_NAME',
      `invalid event name: a letter then A-Z a-z 0-9 _ . : -, at most ${MAX_EVENT_NAME_LENGTH} characters`,
    );
  }
  return input;
}

/**
 * Checks a content type such as `text/plain; charset=utf-8`.
 *
 * @throws WarrenError `INVALID_CONTENT_TYPE`
 */
export function parseContentType(input: unknown): string {
  if (typeof input !== 'string' || input.length === 0 || input.length > MAX_CONTENT_TYPE_LENGTH || !CONTENT_TYPE.test(input)) {
    throw new WarrenError(
      'INVALID_CONTENT_TYPE',
      `invalid content type: type/subtype with optional parameters, at most ${MAX_CONTENT_TYPE_LENGTH} characters`,
    );
  }
  return input;
}

function passes(parse: (v: unknown) => string): (v: unknown) => boolean {
  return (v) => {
    // Every rule wants a string; answering the common "absent" case here
    // saves building (and throwing) an Error per message read from the wire.
    if (typeof v !== 'string') return false;
    try {
      parse(v);
      return true;
    } catch {
      return false;
    }
  };
}

/** `true` when {@link parseMessageId} would accept the value. */
export const isMessageId = passes(parseMessageId);
/** `true` when {@link parseEventName} would accept the value. */
export const isEventName = passes(parseEventName);
/** `true` when {@link parseContentType} would accept the value. */
export const isContentType = passes(parseContentType);
/** `true` when {@link parseChannel} would accept the value. */
export const isChannel = passes(parseChannel) as (input: unknown) => input is string;
