import { isTextual, type MessageFrame, type WarrenMessage } from '@warren/protocol';

// Protocol's rule, still imported from here by the transports.
export { isTextual };

const LINE_BREAK = /\r\n|\r|\n/;

/**
 * One SSE event: `id:`, `event:` when named, the body as `data:` lines (split
 * on every kind of line break; a binary body is base64). An id or event name
 * with a line break would forge fields, so it is refused.
 * @throws Error for an id or event name containing CR or LF
 */
export function encodeSseEvent(message: WarrenMessage): string {
  if (LINE_BREAK.test(message.id) || (message.event !== undefined && LINE_BREAK.test(message.event))) {
    throw new Error('SSE id and event name must not contain CR or LF');
  }
  let out = `id: ${message.id}\n`;
  if (message.event !== undefined) out += `event: ${message.event}\n`;
  const text = isTextual(message.contentType) ? message.body.toString('utf8') : message.body.toString('base64');
  for (const line of text.split(LINE_BREAK)) out += `data: ${line}\n`;
  return `${out}\n`;
}

/**
 * One SSE event of application data (`PushConnection.write`): the optional
 * `id:` and `event:`, then the text as `data:` lines; a `Buffer` is base64.
 * @throws Error for an id or event name containing CR or LF
 */
export function encodeSseData(data: string | Buffer, options: { id?: string; event?: string }): string {
  if ((options.id !== undefined && LINE_BREAK.test(options.id)) || (options.event !== undefined && LINE_BREAK.test(options.event))) {
    throw new Error('SSE id and event name must not contain CR or LF');
  }
  let out = '';
  if (options.id !== undefined) out += `id: ${options.id}\n`;
  if (options.event !== undefined) out += `event: ${options.event}\n`;
  const text = typeof data === 'string' ? data : data.toString('base64');
  for (const line of text.split(LINE_BREAK)) out += `data: ${line}\n`;
  return `${out}\n`;
}

/** The `warren.v1` frame of a message: its body as text, or base64 when the content type is not textual. */
export function messageFrame(channel: string, message: WarrenMessage, pattern?: string): MessageFrame {
  const textual = isTextual(message.contentType);
  const frame: MessageFrame = {
    type: 'message',
    channel,
    ...(pattern === undefined ? {} : { pattern }),
    id: message.id,
    contentType: message.contentType,
    data: textual ? message.body.toString('utf8') : message.body.toString('base64'),
  };
  if (message.event !== undefined) frame.event = message.event;
  if (!textual) frame.encoding = 'base64';
  return frame;
}

/**
 * Encodings shared by every subscriber a message is written to: a fan-out
 * hands one message object to thousands of connections, and encoding it
 * once (not once per connection) is what keeps the fan-out cheap.
 */
const frameBytes = new WeakMap<WarrenMessage, { channel: string; pattern: string | undefined; bytes: Buffer }>();

/**
 * The SSE chunk of a message, kept on the message object itself: a message
 * of an identified stream is decoded for one delivery, and a `WeakMap` entry
 * per delivery costs the garbage collector more than a field. Not
 * enumerable, so that a copy made by spreading (`{ ...message, id }`, as the
 * channel logs give a message its event id) never inherits the encoding of
 * the original.
 */
const SSE_CHUNK = Symbol('warren.sseChunk');
type WithSseChunk = WarrenMessage & { [SSE_CHUNK]?: Buffer };

/**
 * {@link encodeSseEvent} framed as one HTTP/1.1 chunk (`<size in hex>\r\n`,
 * the event, `\r\n`), encoded once per message object: a chunked SSE
 * response writes it to its socket as it is, one write per connection where
 * `res.write` makes three (size, data, line break).
 */
export function sseEventChunk(message: WarrenMessage): Buffer {
  const m = message as WithSseChunk;
  let chunk = m[SSE_CHUNK];
  if (chunk === undefined) {
    const event = encodeSseEvent(message);
    chunk = Buffer.from(`${Buffer.byteLength(event, 'utf8').toString(16)}\r\n${event}\r\n`, 'utf8');
    Object.defineProperty(m, SSE_CHUNK, { value: chunk, enumerable: false });
  }
  return chunk;
}

/** {@link encodeSseEvent} as bytes (a view into {@link sseEventChunk}'s buffer), for a response that is not chunked. */
export function sseEventBytes(message: WarrenMessage): Buffer {
  const chunk = sseEventChunk(message);
  return chunk.subarray(chunk.indexOf(0x0a) + 1, chunk.length - 2);
}

/** The JSON of {@link messageFrame} as UTF-8 bytes, encoded once per message object and channel. */
export function messageFrameBytes(channel: string, message: WarrenMessage, pattern?: string): Buffer {
  const cached = frameBytes.get(message);
  if (cached !== undefined && cached.channel === channel && cached.pattern === pattern) return cached.bytes;
  const bytes = Buffer.from(JSON.stringify(messageFrame(channel, message, pattern)), 'utf8');
  frameBytes.set(message, { channel, pattern, bytes });
  return bytes;
}

/**
 * The SSE event of a message on a wildcard subscription: `id:` and `event:`
 * as on a channel's stream, and as `data:` the `warren.v1` message frame
 * (JSON, one line), whose `channel` says where it was published.
 */
export function patternSseEventBytes(channel: string, message: WarrenMessage, pattern: string): Buffer {
  const frame = messageFrameBytes(channel, message, pattern);
  return Buffer.from(
    encodeSseData(frame.toString('utf8'), { id: message.id, ...(message.event === undefined ? {} : { event: message.event }) }),
    'utf8',
  );
}
