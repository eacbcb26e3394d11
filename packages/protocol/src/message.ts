import { WarrenError } from './errors.js';
import { generateMessageId, parseContentType, parseEventName, parseMessageId } from './names.js';

/** What a producer may publish: text, bytes, or any JSON value. */
export type MessageData = string | Uint8Array | ArrayBuffer | object | number | boolean | null;

/** Optional fields of a message. */
export interface MessageOptions {
  /** Message id; a random UUID when absent. */
  id?: string;
  /** Event name (SSE `event:`); absent for plain messages. */
  event?: string;
  /** Content type; by default derived from the data (see {@link encodeMessage}). */
  contentType?: string;
}

/** A message as it travels: bytes plus the metadata every transport needs. */
export interface WarrenMessage {
  id: string;
  event?: string;
  contentType: string;
  body: Buffer;
  /** Milliseconds since the epoch when it was published, when known. */
  publishedAt?: number;
}

export const TEXT_CONTENT_TYPE = 'text/plain; charset=utf-8';
export const JSON_CONTENT_TYPE = 'application/json';
export const BINARY_CONTENT_TYPE = 'application/octet-stream';

/**
 * Whether a content type travels as text over SSE and in `warren.v1` frames
 * (`text/*`, JSON, XML, JavaScript, form data); any other body is sent base64
 * (with `encoding: 'base64'` in a frame).
 * @example isTextual('application/ld+json; charset=utf-8') // true
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

/**
 * Turns data into a message: a string becomes UTF-8 `text/plain`, bytes
 * `application/octet-stream`, anything else JSON (`application/json`).
 * A given `contentType` overrides the derived one.
 *
 * @throws WarrenError `INVALID_MESSAGE_ID`, `INVALID_EVENT_NAME`, `INVALID_CONTENT_TYPE`, `INVALID_MESSAGE`
 */
export function encodeMessage(data: MessageData, options: MessageOptions = {}): WarrenMessage {
  let body: Buffer;
  let contentType: string;
  if (typeof data === 'string') {
    body = Buffer.from(data, 'utf8');
    contentType = TEXT_CONTENT_TYPE;
  } else if (data instanceof Uint8Array) {
    body = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    contentType = BINARY_CONTENT_TYPE;
  } else if (data instanceof ArrayBuffer) {
    body = Buffer.from(data);
    contentType = BINARY_CONTENT_TYPE;
  } else {
    let json: string | undefined;
    try {
      json = JSON.stringify(data);
    } catch (err) {
      throw new WarrenError('INVALID_MESSAGE', `message is not JSON-serializable: ${(err as Error).message}`, { cause: err });
    }
    if (json === undefined) throw new WarrenError('INVALID_MESSAGE', 'message is not JSON-serializable');
    body = Buffer.from(json, 'utf8');
    contentType = JSON_CONTENT_TYPE;
  }
  const message: WarrenMessage = {
    id: options.id === undefined ? generateMessageId() : parseMessageId(options.id),
    contentType: options.contentType === undefined ? contentType : parseContentType(options.contentType),
    body,
  };
  if (options.event !== undefined) message.event = parseEventName(options.event);
  return message;
}
