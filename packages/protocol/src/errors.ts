/**
 * Every error Warren reports carries a stable `code`. Codes never change
 * meaning; new ones may be added. Over HTTP an error is the JSON body
 * `{ "code": "...", "message": "..." }` with the status listed here.
 */
export const ERROR_CODES = {
  INVALID_REQUEST: { status: 400, description: 'The request line, URL or headers could not be parsed, or the `Host` header is missing.' },
  INVALID_CHANNEL: { status: 400, description: 'The channel path breaks the channel rules (characters, length, segments).' },
  INVALID_CONSUMER_ID: { status: 400, description: 'The consumer id (header, query parameter) breaks the consumer-id rules.' },
  INVALID_MESSAGE_ID: { status: 400, description: 'A message id breaks the message-id rules.' },
  INVALID_EVENT_NAME: { status: 400, description: 'An event name breaks the event-name rules.' },
  INVALID_CONTENT_TYPE: { status: 400, description: 'A content type is malformed or too long.' },
  INVALID_TIMEOUT: { status: 400, description: 'The `timeout` query parameter is not a number of seconds within the allowed range.' },
  INVALID_MESSAGE: { status: 400, description: 'The message body cannot be encoded (for example a value JSON cannot represent).' },
  INVALID_BATCH: {
    status: 400,
    description:
      'A publish batch is not `application/x-ndjson`, or a line of it is not a JSON object with `channel` or `channels` and `data`; the message names the line. Nothing of the batch was published.',
  },
  INVALID_PATTERN: {
    status: 400,
    description:
      'A wildcard pattern is malformed: only a last segment `*` (one segment) or `**` (any depth) after a valid channel is allowed, as in `/stocks/*` ([Wildcard subscriptions](wildcards.md)).',
  },
  WILDCARD_NOT_SUPPORTED: {
    status: 400,
    description:
      'A wildcard pattern was used where patterns are not served: a long-poll, `?history=`/`since`, presence, or a send; subscribe to it with SSE or a `warren.v1` WebSocket.',
  },
  INVALID_FRAME: { status: 400, description: 'A WebSocket frame is not a valid `warren.v1` command.' },
  TOO_MANY_SUBSCRIPTIONS: { status: 400, description: 'A WebSocket asked for more channels than `--ws-max-subscriptions`.' },
  UNAUTHORIZED: {
    status: 401,
    description: 'The publish token is missing or wrong, or the application (`--auth-url`) refused the subscription with 401.',
  },
  INVALID_TOKEN: {
    status: 401,
    description:
      'A signed channel token (`v1` or JWT) is malformed, its signature does not match, its `alg` or key is not one the gateway takes, or a claim does not check (`nbf`, `aud`, `iss`, `channels`, `sub`).',
  },
  TOKEN_EXPIRED: { status: 401, description: 'A signed channel token (`v1` or JWT) has expired; get a new one from the application.' },
  FORBIDDEN: {
    status: 403,
    description: 'The application (`--auth-url`) refused the subscription with 403, or a signed token does not cover the channel.',
  },
  WILDCARD_NOT_ALLOWED: {
    status: 403,
    description: 'A wildcard pattern names channels outside `--wildcard-routes` (or the gateway has none).',
  },
  ORIGIN_NOT_ALLOWED: { status: 403, description: 'A WebSocket upgrade came from an origin not in `--cors-origins`.' },
  FORBIDDEN_FROM_BROWSER: {
    status: 403,
    description: 'The publish endpoint refuses requests that carry browser headers (`Origin`, `Sec-Fetch-Site`, `-Dest`, `-User`).',
  },
  PUBLISH_DISABLED: { status: 403, description: 'The gateway was started without a publish token, so HTTP publishing is off.' },
  NOT_FOUND: { status: 404, description: 'No such endpoint.' },
  METHOD_NOT_ALLOWED: { status: 405, description: 'The method is not allowed on this path (`CONNECT` never is); see the `Allow` header.' },
  POLL_SUPERSEDED: {
    status: 409,
    description: 'A newer long-poll for the same consumer and channel took over this one; no message was taken.',
  },
  MESSAGE_TOO_LARGE: { status: 413, description: 'The message body is larger than the configured maximum.' },
  BATCH_TOO_LARGE: {
    status: 413,
    description:
      'A publish batch holds more messages than `--publish-batch-max-messages` or more bytes than `--publish-batch-max-bytes`. Nothing of the batch was published.',
  },
  URI_TOO_LONG: {
    status: 414,
    description: 'The request URL is longer than allowed (2,048 characters; past 16 KiB the whole request head is refused with 431).',
  },
  EXPECTATION_FAILED: { status: 417, description: 'The request has an `Expect` header other than `100-continue`.' },
  HEADERS_TOO_LARGE: { status: 431, description: 'The request headers are larger than allowed.' },
  INTERNAL_ERROR: { status: 500, description: 'An unexpected error in the gateway; it is logged.' },
  NO_APP_CONFIGURED: { status: 501, description: 'A WebSocket client sent a message, but no application is configured to receive it.' },
  TOO_MANY_CONNECTIONS: {
    status: 429,
    description:
      'This client address or identity has as many open subscriptions as `--max-connections-per-ip` / `--max-connections-per-identity` allow.',
  },
  QUEUE_BUDGET_EXCEEDED: {
    status: 429,
    description:
      'This client address asked for more new queues (consumer queues, or channels new to this gateway) than `--queue-budget` allows per minute; retry after the `Retry-After` delay.',
  },
  TOO_MANY_REQUESTS: {
    status: 429,
    description:
      "A WebSocket has too many messages waiting for the application's answers, or too many `presence` questions waiting (16 each).",
  },
  PUBLISH_NACKED: { status: 502, description: 'The broker refused the message (negative publisher confirm); it was not delivered.' },
  UPSTREAM_UNAVAILABLE: {
    status: 502,
    description:
      'The application (`--upstream`, `--auth-url`) could not be reached or answered with a server error, or the JWK Set (`--token-jwks-url`) could not be fetched for a token whose key it did not hold yet.',
  },
  UPSTREAM_TIMEOUT: { status: 504, description: 'The application did not answer within `--upstream-timeout`.' },
  BROKER_UNAVAILABLE: {
    status: 503,
    description:
      'The broker is not reachable right now; retry after the `Retry-After` delay. A publish that failed with this code was not confirmed and may be retried.',
  },
  QUEUE_LIMIT_REACHED: {
    status: 503,
    description:
      'This gateway already keeps `--max-queues` consumer queues (or anonymous channels, or wildcard patterns); existing ones still work.',
  },
  BROKER_TIMEOUT: {
    status: 503,
    description:
      'The broker did not answer within `--broker-timeout` (it is stalled or overloaded). A publish that failed with this code may still have been delivered; retrying it is safe under at-least-once delivery.',
  },
  GATEWAY_UNREACHABLE: { status: null, description: 'Client side: the gateway could not be reached over HTTP.' },
  GATEWAY_ERROR: { status: null, description: 'Client side: the gateway answered with an unexpected status or body.' },
  PRODUCER_CLOSED: { status: null, description: 'Client side: publish() was called after close().' },
  PRODUCER_NOT_CONFIGURED: {
    status: null,
    description:
      'Client side: `new Producer()` found no URL (option `url`, `WARREN_AMQP_URL`, `WARREN_URL`), or no publish token for an `http(s)://` URL (option `token`, `WARREN_PUBLISH_TOKEN`, the token file `warren serve` writes); the message says what to set.',
  },
  CONNECTION_CLOSED: { status: null, description: 'Library: `subscribe()` was called on a push connection that is closed or closing.' },
  REQUEST_NOT_KEPT: {
    status: null,
    description:
      "Library: `conn.request`, `conn.path` or `conn.query` was read on a connection of the default handler (`warren serve`, or `createGateway()` without `onUpgrade`), which keeps no request once the stream is open; an `onUpgrade` handler's connections keep them.",
  },
} as const satisfies Record<string, { status: number | null; description: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The JSON body of every error response. */
export interface ErrorBody {
  code: ErrorCode;
  message: string;
}

/**
 * The one error class of Warren. Branch on `code`, never on `message`.
 * `status` is the HTTP status the code maps to (`null` for client-side codes).
 */
export class WarrenError extends Error {
  override readonly name = 'WarrenError';
  readonly code: ErrorCode;
  readonly status: number | null;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.status = ERROR_CODES[code].status;
  }

  toJSON(): ErrorBody {
    return { code: this.code, message: this.message };
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, value);
}
