import { ACCESS_LOG_TARGETS, type AccessLogTarget } from './access-log.js';
import { adaptLogger, type Logger, type LogLevel, type PinoLike } from './logger.js';
import { parseProxies } from './proxies.js';

/**
 * Options of {@link createGateway}. Every field has a default (see
 * {@link OPTION_SPECS}) and is checked once by {@link normalizeOptions}.
 */
export interface GatewayOptions {
  /** TCP port. `0` picks a free one. @default 4000 */
  port?: number;
  /** Address to listen on. @default all interfaces */
  host?: string;
  /**
   * PEM file of the certificate (followed by its intermediates) that the
   * gateway's own server presents: it serves HTTPS and WSS instead of HTTP
   * and WS. Needs `tlsKey`; re-read by `gateway.reloadTls()`.
   * @default none: plain HTTP
   */
  tlsCert?: string;
  /** PEM file of the certificate's private key (unencrypted). Needs `tlsCert`. @default none */
  tlsKey?: string;
  /** RabbitMQ URL. @default none: the embedded in-process broker */
  amqpUrl?: string;
  /** Exchange channels are published to. @default 'warren' */
  exchange?: string;
  /**
   * RabbitMQ's management HTTP API (`http://user:pass@host:15672`; without
   * credentials, those of `amqpUrl`): the publish endpoint's answers then
   * count the queues and logs each message reached (`queues`, `routes`), from
   * a listing of the exchange's bindings at most `routeCountMaxAgeMs` old.
   * Needs `amqpUrl` (the embedded broker counts by itself).
   * @default none: no count on RabbitMQ
   */
  managementUrl?: string;
  /** How long one listing of the exchange's bindings serves route counts. @default 1_000 */
  routeCountMaxAgeMs?: number;
  /** Bearer token for `POST /_warren/publish`. @default none: HTTP publishing is off */
  publishToken?: string;
  /** How long a long-poll waits for a message. @default 25_000 */
  pollTimeoutMs?: number;
  /** Upper bound of the `timeout` a client may ask for. @default 120_000 */
  maxPollTimeoutMs?: number;
  /** How long a consumer queue outlives its last poll (`x-expires`). @default 300_000 */
  queueExpiresMs?: number;
  /** Most messages a consumer queue keeps; oldest dropped first. @default 10_000 */
  queueMaxLength?: number;
  /** Consumer queue type: `classic`, or `quorum` on a RabbitMQ cluster. @default 'classic' */
  queueType?: 'classic' | 'quorum';
  /** Largest message accepted for publishing, in bytes. @default 262_144 */
  maxMessageBytes?: number;
  /** Most messages one publish batch (`POST /_warren/publish/batch`) may hold. @default 1000 */
  publishBatchMaxMessages?: number;
  /** Largest publish batch body, in bytes. @default 4_194_304 */
  publishBatchMaxBytes?: number;
  /** Interval of SSE heartbeat comments (sent to streams that carried nothing else meanwhile). @default 15_000 */
  sseHeartbeatMs?: number;
  /** The `retry:` hint sent to EventSource clients. @default 2_000 */
  sseRetryMs?: number;
  /** WebSocket ping interval; a socket that missed a pong by the next ping is dropped. @default 30_000 */
  wsPingIntervalMs?: number;
  /** Largest frame a WebSocket client may send. @default 65_536 */
  wsMaxPayload?: number;
  /** Most channels one `warren.v1` socket may subscribe to. @default 64 */
  wsMaxSubscriptions?: number;
  /** Messages in flight (unacknowledged) per identified stream. @default 64 */
  streamPrefetch?: number;
  /** Bytes an anonymous stream may have waiting for its socket before it is closed as too slow. @default 1_048_576 */
  maxPendingBytes?: number;
  /**
   * Origins whose pages may read channels cross-origin (EventSource,
   * long-poll with `fetch`), with credentials: exact origins such as
   * `https://app.example.com`, comma-separated, or `*` for any origin
   * without credentials. @default none
   */
  corsOrigins?: string;
  /** The web application Warren sits in front of: what is not a subscription is proxied to it. @default none */
  upstream?: string;
  /** Path prefixes that are push channels, comma-separated (`/live/,/rooms/`); required with `upstream`. @default every path, without upstream */
  pushRoutes?: string;
  /** Path prefixes under the push routes that still belong to the application, comma-separated. @default none */
  appRoutes?: string;
  /** Path prefixes of the logged channels, comma-separated (`/live/news/,/rooms/`): history and resume (docs/channel-logs.md). @default none */
  logRoutes?: string;
  /**
   * Path prefixes under which clients may subscribe by pattern, comma-separated
   * (`/stocks/`): `/stocks/*` (one segment), `/stocks/**` (any depth). The
   * exchange must then be a topic exchange (docs/wildcards.md). @default none: no patterns
   */
  wildcardRoutes?: string;
  /** How long a process's wildcard queue outlives its last pattern subscriber. @default 30_000 */
  wildcardLingerMs?: number;
  /**
   * Path prefixes of the audited channels, comma-separated (`/orders/,/alerts/`):
   * what the consumer queues of their identified consumers drop on overflow is
   * kept in the audit stream (`GET /_warren/missed`, docs/audit.md). @default none
   */
  auditRoutes?: string;
  /** How long the audit stream keeps its entries (`x-max-age`). @default 604_800_000 */
  auditMaxAgeMs?: number;
  /** Most bytes the audit stream keeps; the oldest are cut first (`x-max-length-bytes`). @default 67_108_864 */
  auditMaxBytes?: number;
  /** How long a channel log keeps its entries (`x-max-age`). @default 86_400_000 */
  logMaxAgeMs?: number;
  /** Most bytes one log shard keeps; the oldest are cut first (`x-max-length-bytes`). @default 268_435_456 */
  logMaxBytes?: number;
  /** Number of shard streams the logged channels are hashed into. @default 4 */
  logShards?: number;
  /** How often the positions of identified streams on logged channels are recorded (besides when a stream ends). @default 5_000 */
  logPositionIntervalMs?: number;
  /**
   * Path prefixes of the presence channels, comma-separated (`/rooms/,/docs/`):
   * who is subscribed (identities vouched for by the app or a token), join
   * and leave events, across every gateway process (docs/presence.md).
   * @default none
   */
  presenceRoutes?: string;
  /** How often each process announces its presence members to the others; a process not heard from for 3 intervals is taken for gone. @default 2_000 */
  presenceIntervalMs?: number;
  /** How long a member whose last connection closed stays present: a reconnect within it causes no leave and join. @default 5_000 */
  presenceGraceMs?: number;
  /** The application's URL that receives presence joins and leaves, batched, one POST per interval. @default none */
  presenceWebhook?: string;
  /** Longest wait for the application (proxied requests, auth checks). @default 30_000 */
  upstreamTimeoutMs?: number;
  /** Addresses or CIDR ranges of proxies in front of Warren whose `X-Forwarded-*`, `Forwarded` and `X-Real-IP` are trusted, comma-separated (`10.0.0.0/8, ::1/128`). @default none */
  trustedProxies?: string;
  /** The application's endpoint that decides whether a subscription may open (reverse-proxied auth). @default none */
  authUrl?: string;
  /** How long an auth decision is reused for the same credentials and channel. @default 5_000 */
  authCacheMs?: number;
  /** Where a client's WebSocket message goes in the app: a path with `{channel}` for the channel path. @default '{channel}' */
  wsMessagePath?: string;
  /** The method of that request: POST, PUT or PATCH. @default 'POST' */
  wsMessageMethod?: string;
  /** Secret (at least 32 bytes) that verifies signed channel tokens: `v1` tokens and HS256 JWTs. @default none */
  tokenSecret?: string;
  /**
   * File of the public key that verifies RS256, ES256 and EdDSA JWTs: PEM
   * (`-----BEGIN PUBLIC KEY-----`, SPKI), a JWK, or a JWK Set (`{"keys": [...]}`).
   * Read once, at start. @default none
   */
  tokenPublicKey?: string;
  /** URL of a JWK Set whose keys verify RS256, ES256 and EdDSA JWTs (by `kid`), fetched and cached. @default none */
  tokenJwksUrl?: string;
  /** How often the JWK Set is fetched again in the background (a failed fetch keeps the keys known). @default 300_000 */
  tokenJwksRefreshMs?: number;
  /** Shortest time between two fetches of the JWK Set caused by a token whose `kid` is not in it. @default 30_000 */
  tokenJwksCooldownMs?: number;
  /** Audiences a JWT's `aud` must name one of, comma-separated. @default none: `aud` is not checked */
  tokenAudience?: string;
  /** The issuer a JWT's `iss` must be. @default none: `iss` is not checked */
  tokenIssuer?: string;
  /** How often long-lived streams are authorized again (auth URL or token). @default 60_000 */
  reauthIntervalMs?: number;
  /** Most open subscriptions (streams and waiting polls) per client address. @default 256 */
  maxConnectionsPerIp?: number;
  /** Most open subscriptions per identity (vouched, token or consumer id). @default 64 */
  maxConnectionsPerIdentity?: number;
  /** New queues (consumer queues, or channels new to the gateway) each client address may cause per minute. @default 120 */
  queueBudget?: number;
  /** Most consumer queues (and, apart, anonymous channels) one gateway keeps. @default 100_000 */
  maxQueues?: number;
  /** Port of the Prometheus listener (`GET /metrics`). `0` picks a free one. @default none: no metrics listener */
  metricsPort?: number;
  /** Address of the metrics listener. @default '127.0.0.1' */
  metricsHost?: string;
  /** @default 'info' */
  logLevel?: LogLevel;
  /**
   * The access log: one JSON line per request once answered, and per stream
   * once it ends, on `stdout` or `stderr`, or through the `logger` (at
   * `info`, message `access`). @default 'off'
   */
  accessLog?: AccessLogTarget;
  /**
   * AMQP heartbeat: a RabbitMQ connection silent for two intervals is taken
   * for dead and replaced (0: the server's choice, 60 s). @default 4_000
   */
  amqpHeartbeatMs?: number;
  /** Longest wait for one broker operation (declare, consume, get, publisher confirm). @default 10_000 */
  brokerTimeoutMs?: number;
  /** First RabbitMQ reconnect delay. @default 100 */
  reconnectMinMs?: number;
  /** Longest RabbitMQ reconnect delay. @default 5_000 */
  reconnectMaxMs?: number;
  /** How long `drain()` (SIGTERM) keeps serving after readiness turned 503, so that load balancers notice first. @default 5_000 */
  drainDelayMs?: number;
  /** The window over which `drain()` spreads the reconnects of the streams it ends. @default 10_000 */
  drainSpreadMs?: number;
  /** Longest `drain()` (SIGTERM) waits for its connections to leave before closing what is left. @default 30_000 */
  shutdownTimeoutMs?: number;
  /**
   * Replaces the JSON-lines logger on stderr: an object with
   * `debug/info/warn/error(msg, fields)`, or a pino logger as it is (its
   * `info(fields, msg)` is recognised and adapted; its own level applies,
   * not `logLevel`).
   * @example
   * createGateway({ logger: pino({ level: 'warn' }) });
   */
  logger?: Logger | PinoLike;
}

type Unset =
  | 'host'
  | 'tlsCert'
  | 'tlsKey'
  | 'amqpUrl'
  | 'managementUrl'
  | 'publishToken'
  | 'logger'
  | 'corsOrigins'
  | 'upstream'
  | 'pushRoutes'
  | 'appRoutes'
  | 'logRoutes'
  | 'wildcardRoutes'
  | 'presenceRoutes'
  | 'presenceWebhook'
  | 'auditRoutes'
  | 'trustedProxies'
  | 'authUrl'
  | 'tokenSecret'
  | 'tokenPublicKey'
  | 'tokenJwksUrl'
  | 'tokenAudience'
  | 'tokenIssuer'
  | 'metricsPort';
export type NormalizedOptions = Required<Omit<GatewayOptions, Unset>> &
  Pick<GatewayOptions, Exclude<Unset, 'logger'>> & {
    /** The `logger` option as the gateway calls it (a pino logger adapted). */
    logger?: Logger;
  };

type Kind =
  | 'integer'
  | 'duration'
  | 'bytes'
  | 'string'
  | 'file'
  | 'url'
  | 'http-url'
  | 'secret'
  | 'level'
  | 'access-log'
  | 'origins'
  | 'prefixes'
  | 'proxies'
  | 'path-template'
  | 'method';

/** One setting: its library key, command-line flag, environment variable and bounds. */
export interface OptionSpec {
  key: keyof NormalizedOptions;
  flag: string;
  env: string;
  kind: Kind;
  default: number | string | undefined;
  /** Shown where the default is not a plain value. */
  defaultText?: string;
  min?: number;
  max?: number;
  description: string;
}

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const DAY = 24 * 60 * MINUTE;

export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];

/** Every gateway setting, in one place. README.md's configuration table mirrors it (a test checks). */
export const OPTION_SPECS: readonly OptionSpec[] = [
  {
    key: 'port',
    flag: '--port',
    env: 'WARREN_PORT',
    kind: 'integer',
    default: 4000,
    min: 0,
    max: 65535,
    description: 'TCP port to listen on (0 picks a free one).',
  },
  {
    key: 'host',
    flag: '--host',
    env: 'WARREN_HOST',
    kind: 'string',
    default: undefined,
    defaultText: 'all interfaces',
    description: 'Address to listen on.',
  },
  {
    key: 'tlsCert',
    flag: '--tls-cert',
    env: 'WARREN_TLS_CERT',
    kind: 'file',
    default: undefined,
    defaultText: 'none: plain HTTP',
    description:
      'PEM file of the certificate (followed by its intermediates) for HTTPS and WSS on the gateway\'s port; needs `--tls-key`. `warren serve` reads it again on SIGHUP; see "TLS" in docs/operations.md.',
  },
  {
    key: 'tlsKey',
    flag: '--tls-key',
    env: 'WARREN_TLS_KEY',
    kind: 'file',
    default: undefined,
    defaultText: 'none',
    description: "PEM file of the certificate's private key (unencrypted); needs `--tls-cert`.",
  },
  {
    key: 'amqpUrl',
    flag: '--amqp-url',
    env: 'WARREN_AMQP_URL',
    kind: 'url',
    default: undefined,
    defaultText: 'embedded broker',
    description:
      'RabbitMQ URL (`amqp://` or `amqps://`), or several comma-separated (the nodes of a cluster): the gateway connects to one and moves on to the next when it loses it. Without it the gateway runs its in-process broker.',
  },
  {
    key: 'exchange',
    flag: '--exchange',
    env: 'WARREN_EXCHANGE',
    kind: 'string',
    default: 'warren',
    description: 'Exchange that channels are published to.',
  },
  {
    key: 'managementUrl',
    flag: '--management-url',
    env: 'WARREN_MANAGEMENT_URL',
    kind: 'http-url',
    default: undefined,
    defaultText: 'none: no count on RabbitMQ',
    description:
      "RabbitMQ's management HTTP API (`http://user:pass@host:15672`; without credentials, the `--amqp-url` user's): publish answers then say how many queues and logs took each message (`queues`, `routes`), counted from the exchange's bindings listed at most `--route-count-max-age` before ([Was it routed?](publishing.md#was-it-routed)). Needs `--amqp-url`; the embedded broker always counts.",
  },
  {
    key: 'routeCountMaxAgeMs',
    flag: '--route-count-max-age',
    env: 'WARREN_ROUTE_COUNT_MAX_AGE',
    kind: 'duration',
    default: SECOND,
    min: 100,
    max: 10 * MINUTE,
    description:
      'How long one listing of the exchange bindings serves the route counts of publishes (with `--management-url`): the most a count can be out of date, and the least time between two listings.',
  },
  {
    key: 'publishToken',
    flag: '--publish-token',
    env: 'WARREN_PUBLISH_TOKEN',
    kind: 'secret',
    default: undefined,
    defaultText: '`warren serve` generates one',
    description: 'Bearer token for `POST /_warren/publish` (at least 16 characters).',
  },
  {
    key: 'pollTimeoutMs',
    flag: '--poll-timeout',
    env: 'WARREN_POLL_TIMEOUT',
    kind: 'duration',
    default: 25 * SECOND,
    min: 0,
    max: 3600 * SECOND,
    description: 'How long a long-poll waits before answering 204.',
  },
  {
    key: 'maxPollTimeoutMs',
    flag: '--max-poll-timeout',
    env: 'WARREN_MAX_POLL_TIMEOUT',
    kind: 'duration',
    default: 120 * SECOND,
    min: 0,
    max: 3600 * SECOND,
    description: 'Largest `?timeout=` a client may ask for.',
  },
  {
    key: 'queueExpiresMs',
    flag: '--queue-expires',
    env: 'WARREN_QUEUE_EXPIRES',
    kind: 'duration',
    default: 5 * MINUTE,
    min: SECOND,
    max: 30 * DAY,
    description: 'How long a consumer queue outlives its last poll (`x-expires`).',
  },
  {
    key: 'queueMaxLength',
    flag: '--queue-max-length',
    env: 'WARREN_QUEUE_MAX_LENGTH',
    kind: 'integer',
    default: 10_000,
    min: 1,
    max: 10_000_000,
    description: 'Most messages a consumer queue keeps; the oldest are dropped first (`x-max-length`).',
  },
  {
    key: 'queueType',
    flag: '--queue-type',
    env: 'WARREN_QUEUE_TYPE',
    kind: 'string',
    default: 'classic',
    description:
      "Type of the consumer queues: `classic` (one node holds a queue) or `quorum` (replicated over a RabbitMQ cluster, so an identified consumer's backlog survives the loss of a node; more memory and latency per message). Anonymous fan-out queues stay classic.",
  },
  {
    key: 'maxMessageBytes',
    flag: '--max-message-bytes',
    env: 'WARREN_MAX_MESSAGE_BYTES',
    kind: 'bytes',
    default: 256 * 1024,
    min: 1,
    max: 64 * 1024 * 1024,
    description: 'Largest message body accepted for publishing.',
  },
  {
    key: 'publishBatchMaxMessages',
    flag: '--publish-batch-max-messages',
    env: 'WARREN_PUBLISH_BATCH_MAX_MESSAGES',
    kind: 'integer',
    default: 1000,
    min: 1,
    max: 100_000,
    description: 'Most messages one publish batch (`POST /_warren/publish/batch`) may hold.',
  },
  {
    key: 'publishBatchMaxBytes',
    flag: '--publish-batch-max-bytes',
    env: 'WARREN_PUBLISH_BATCH_MAX_BYTES',
    kind: 'bytes',
    default: 4 * 1024 * 1024,
    min: 1024,
    max: 256 * 1024 * 1024,
    description: 'Largest publish batch body (each message in it is also held to `--max-message-bytes`).',
  },
  {
    key: 'sseHeartbeatMs',
    flag: '--sse-heartbeat',
    env: 'WARREN_SSE_HEARTBEAT',
    kind: 'duration',
    default: 15 * SECOND,
    min: 100,
    max: 10 * MINUTE,
    description: 'Interval of SSE heartbeat comments (sent to streams that carried nothing else meanwhile).',
  },
  {
    key: 'sseRetryMs',
    flag: '--sse-retry',
    env: 'WARREN_SSE_RETRY',
    kind: 'duration',
    default: 2 * SECOND,
    min: 0,
    max: 10 * MINUTE,
    description: 'The `retry:` reconnect delay hinted to EventSource clients.',
  },
  {
    key: 'wsPingIntervalMs',
    flag: '--ws-ping-interval',
    env: 'WARREN_WS_PING_INTERVAL',
    kind: 'duration',
    default: 30 * SECOND,
    min: 100,
    max: 10 * MINUTE,
    description: 'WebSocket ping interval; a socket that has not answered by the next ping is dropped.',
  },
  {
    key: 'wsMaxPayload',
    flag: '--ws-max-payload',
    env: 'WARREN_WS_MAX_PAYLOAD',
    kind: 'bytes',
    default: 64 * 1024,
    min: 1,
    max: 16 * 1024 * 1024,
    description: 'Largest frame a WebSocket client may send (larger: close 1009).',
  },
  {
    key: 'wsMaxSubscriptions',
    flag: '--ws-max-subscriptions',
    env: 'WARREN_WS_MAX_SUBSCRIPTIONS',
    kind: 'integer',
    default: 64,
    min: 1,
    max: 10_000,
    description: 'Most channels one `warren.v1` socket may subscribe to.',
  },
  {
    key: 'streamPrefetch',
    flag: '--stream-prefetch',
    env: 'WARREN_STREAM_PREFETCH',
    kind: 'integer',
    default: 64,
    min: 1,
    max: 65_535,
    description: 'Messages in flight (unacknowledged) per identified SSE or WebSocket stream.',
  },
  {
    key: 'maxPendingBytes',
    flag: '--max-pending-bytes',
    env: 'WARREN_MAX_PENDING_BYTES',
    kind: 'bytes',
    default: 1024 * 1024,
    min: 1024,
    max: 1024 * 1024 * 1024,
    description: 'Bytes an anonymous stream may have waiting for its socket before it is closed as too slow.',
  },
  {
    key: 'corsOrigins',
    flag: '--cors-origins',
    env: 'WARREN_CORS_ORIGINS',
    kind: 'origins',
    default: undefined,
    defaultText: 'none',
    description:
      "Origins whose pages may read channels cross-origin with credentials: exact origins, comma-separated (`https://app.example.com`), or `*` for any origin without credentials. WebSockets carry cookies whatever CORS says: only listed origins (and the gateway's own) may open one, never `*`.",
  },
  {
    key: 'upstream',
    flag: '--upstream',
    env: 'WARREN_UPSTREAM',
    kind: 'http-url',
    default: undefined,
    defaultText: 'none',
    description:
      'The web application in front of which Warren sits (`http://app:3000`): every request that is not a subscription is proxied to it.',
  },
  {
    key: 'pushRoutes',
    flag: '--push-routes',
    env: 'WARREN_PUSH_ROUTES',
    kind: 'prefixes',
    default: undefined,
    defaultText: 'every path (required with `--upstream`)',
    description: 'Path prefixes that are push channels, comma-separated (`/live/,/rooms/`); other paths go to the application.',
  },
  {
    key: 'appRoutes',
    flag: '--app-routes',
    env: 'WARREN_APP_ROUTES',
    kind: 'prefixes',
    default: undefined,
    defaultText: 'none',
    description: 'Path prefixes under the push routes that still go to the application (`/live/api/`), comma-separated.',
  },
  {
    key: 'logRoutes',
    flag: '--log-routes',
    env: 'WARREN_LOG_ROUTES',
    kind: 'prefixes',
    default: undefined,
    defaultText: 'none',
    description:
      'Path prefixes of the logged channels, comma-separated (`/live/news/,/rooms/`): their messages are kept in RabbitMQ streams, and any subscriber may ask for history or resume ([Channel logs](channel-logs.md)).',
  },
  {
    key: 'wildcardRoutes',
    flag: '--wildcard-routes',
    env: 'WARREN_WILDCARD_ROUTES',
    kind: 'prefixes',
    default: undefined,
    defaultText: 'none',
    description:
      'Path prefixes under which clients may subscribe by pattern, comma-separated (`/stocks/`): `/stocks/*` (one segment), `/stocks/**` (any depth). The exchange must be a topic exchange ([Wildcard subscriptions](wildcards.md)).',
  },
  {
    key: 'wildcardLingerMs',
    flag: '--wildcard-linger',
    env: 'WARREN_WILDCARD_LINGER',
    kind: 'duration',
    default: 30 * SECOND,
    min: 0,
    max: 3600 * SECOND,
    description:
      "How long a gateway process's wildcard queue outlives its last pattern subscriber (while it exists, every publish is routed).",
  },
  {
    key: 'auditRoutes',
    flag: '--audit-routes',
    env: 'WARREN_AUDIT_ROUTES',
    kind: 'prefixes',
    default: undefined,
    defaultText: 'none',
    description:
      'Path prefixes of the audited channels, comma-separated (`/orders/,/alerts/`): what the queue of an identified consumer drops on overflow is dead-lettered to an audit stream the app reads (`GET /_warren/missed`, `warren listen --missed`; [Audit](audit.md)).',
  },
  {
    key: 'auditMaxAgeMs',
    flag: '--audit-max-age',
    env: 'WARREN_AUDIT_MAX_AGE',
    kind: 'duration',
    default: 7 * 24 * 60 * 60 * SECOND,
    min: SECOND,
    max: 365 * 24 * 60 * 60 * SECOND,
    description: 'How long the audit stream keeps its entries (`x-max-age`; removed a segment at a time).',
  },
  {
    key: 'auditMaxBytes',
    flag: '--audit-max-bytes',
    env: 'WARREN_AUDIT_MAX_BYTES',
    kind: 'bytes',
    default: 64 * 1024 * 1024,
    min: 64 * 1024,
    max: 1024 * 1024 * 1024 * 1024,
    description: 'Most bytes the audit stream keeps; the oldest entries are cut first (`x-max-length-bytes`).',
  },
  {
    key: 'logMaxAgeMs',
    flag: '--log-max-age',
    env: 'WARREN_LOG_MAX_AGE',
    kind: 'duration',
    default: 24 * 60 * 60 * SECOND,
    min: SECOND,
    max: 365 * 24 * 60 * 60 * SECOND,
    description: 'How long a channel log keeps its entries (`x-max-age`; removed a segment at a time).',
  },
  {
    key: 'logMaxBytes',
    flag: '--log-max-bytes',
    env: 'WARREN_LOG_MAX_BYTES',
    kind: 'bytes',
    default: 256 * 1024 * 1024,
    min: 64 * 1024,
    max: 1024 * 1024 * 1024 * 1024,
    description: 'Most bytes one log shard keeps; the oldest entries are cut first (`x-max-length-bytes`).',
  },
  {
    key: 'logShards',
    flag: '--log-shards',
    env: 'WARREN_LOG_SHARDS',
    kind: 'integer',
    default: 4,
    min: 1,
    max: 64,
    description:
      'Number of RabbitMQ streams (`warren:log:<n>`) the logged channels are hashed into. Changing it moves channels to other streams: their history stays behind.',
  },
  {
    key: 'logPositionIntervalMs',
    flag: '--log-position-interval',
    env: 'WARREN_LOG_POSITION_INTERVAL',
    kind: 'duration',
    default: 5 * SECOND,
    min: 100,
    max: 5 * 60 * SECOND,
    description:
      'How often the positions of identified SSE and WebSocket streams on logged channels are recorded, besides when a stream ends: after a gateway crash its consumers get up to this much again ([Positions](channel-logs.md#positions-of-streams)).',
  },
  {
    key: 'presenceRoutes',
    flag: '--presence-routes',
    env: 'WARREN_PRESENCE_ROUTES',
    kind: 'prefixes',
    default: undefined,
    defaultText: 'none',
    description:
      'Path prefixes of the presence channels, comma-separated (`/rooms/,/docs/`): who is subscribed (vouched identities), with join and leave events, across every gateway process ([Presence](presence.md)).',
  },
  {
    key: 'presenceIntervalMs',
    flag: '--presence-interval',
    env: 'WARREN_PRESENCE_INTERVAL',
    kind: 'duration',
    default: 2 * SECOND,
    min: 100,
    max: MINUTE,
    description:
      'How often each gateway process announces its presence members on the broker; a process not heard from for 3 intervals loses its members (within 3.5 intervals of its death).',
  },
  {
    key: 'presenceGraceMs',
    flag: '--presence-grace',
    env: 'WARREN_PRESENCE_GRACE',
    kind: 'duration',
    default: 5 * SECOND,
    min: 0,
    max: 5 * MINUTE,
    description:
      'How long a member whose last connection closed stays present: a reconnect within it (a reload, a network blip) causes no leave and join.',
  },
  {
    key: 'presenceWebhook',
    flag: '--presence-webhook',
    env: 'WARREN_PRESENCE_WEBHOOK',
    kind: 'http-url',
    default: undefined,
    defaultText: 'none',
    description:
      "The application's URL that receives presence joins and leaves as JSON, one POST per `--presence-interval` with the changes since the last ([Presence](presence.md#webhook)).",
  },
  {
    key: 'upstreamTimeoutMs',
    flag: '--upstream-timeout',
    env: 'WARREN_UPSTREAM_TIMEOUT',
    kind: 'duration',
    default: 30 * SECOND,
    min: 100,
    max: 10 * MINUTE,
    description: 'Longest wait for the application: proxied requests, auth checks.',
  },
  {
    key: 'trustedProxies',
    flag: '--trusted-proxies',
    env: 'WARREN_TRUSTED_PROXIES',
    kind: 'proxies',
    default: undefined,
    defaultText: 'none',
    description:
      'Addresses or CIDR ranges (`10.0.0.0/8`, `::1/128`) of proxies in front of Warren, comma-separated: their `X-Forwarded-*`, `Forwarded` and `X-Real-IP` are kept, and the client is the right-most `X-Forwarded-For` address that is not one of them; from anyone else these headers are replaced.',
  },
  {
    key: 'authUrl',
    flag: '--auth-url',
    env: 'WARREN_AUTH_URL',
    kind: 'http-url',
    default: undefined,
    defaultText: 'none',
    description: 'The application endpoint asked before a subscription opens (reverse-proxied auth); see "The app in front".',
  },
  {
    key: 'authCacheMs',
    flag: '--auth-cache',
    env: 'WARREN_AUTH_CACHE',
    kind: 'duration',
    default: 5 * SECOND,
    min: 0,
    max: 10 * MINUTE,
    description: 'How long an auth decision is reused for the same credentials and channel.',
  },
  {
    key: 'wsMessagePath',
    flag: '--ws-message-path',
    env: 'WARREN_WS_MESSAGE_PATH',
    kind: 'path-template',
    default: '{channel}',
    description:
      "Where a client's WebSocket message goes in the application: a path in which `{channel}` stands for the channel path (`/api/messages{channel}`).",
  },
  {
    key: 'wsMessageMethod',
    flag: '--ws-message-method',
    env: 'WARREN_WS_MESSAGE_METHOD',
    kind: 'method',
    default: 'POST',
    description: 'The method of that request: POST, PUT or PATCH.',
  },
  {
    key: 'tokenSecret',
    flag: '--token-secret',
    env: 'WARREN_TOKEN_SECRET',
    kind: 'secret',
    default: undefined,
    defaultText: 'none',
    description:
      "Shared secret (at least 32 characters) that verifies signed channel tokens (`?token=` or `Authorization: Bearer`): Warren's `v1` tokens and HS256 JWTs. With it (or a JWT key) and no `--auth-url`, subscriptions need a token.",
  },
  {
    key: 'tokenPublicKey',
    flag: '--token-public-key',
    env: 'WARREN_TOKEN_PUBLIC_KEY',
    kind: 'file',
    default: undefined,
    defaultText: 'none',
    description:
      'File of the public key that verifies RS256, ES256 and EdDSA JWTs: PEM (`-----BEGIN PUBLIC KEY-----`), a JWK, or a JWK Set; see "Standard tokens (JWT)" in docs/app-in-front.md.',
  },
  {
    key: 'tokenJwksUrl',
    flag: '--token-jwks-url',
    env: 'WARREN_TOKEN_JWKS_URL',
    kind: 'http-url',
    default: undefined,
    defaultText: 'none',
    description:
      "URL of a JWK Set (the identity provider's `jwks_uri`) whose keys verify RS256, ES256 and EdDSA JWTs by `kid`; cached, fetched again every `--token-jwks-refresh` and when a token names a `kid` it does not hold.",
  },
  {
    key: 'tokenJwksRefreshMs',
    flag: '--token-jwks-refresh',
    env: 'WARREN_TOKEN_JWKS_REFRESH',
    kind: 'duration',
    default: 5 * MINUTE,
    min: SECOND,
    max: DAY,
    description: 'How often the JWK Set is fetched again in the background; a failed fetch keeps the keys already known.',
  },
  {
    key: 'tokenJwksCooldownMs',
    flag: '--token-jwks-cooldown',
    env: 'WARREN_TOKEN_JWKS_COOLDOWN',
    kind: 'duration',
    default: 30 * SECOND,
    min: 100,
    max: 60 * MINUTE,
    description: 'Shortest time between two fetches of the JWK Set caused by tokens whose `kid` it does not hold.',
  },
  {
    key: 'tokenAudience',
    flag: '--token-audience',
    env: 'WARREN_TOKEN_AUDIENCE',
    kind: 'string',
    default: undefined,
    defaultText: 'not checked',
    description: "Audiences, comma-separated: a JWT's `aud` must name one of them.",
  },
  {
    key: 'tokenIssuer',
    flag: '--token-issuer',
    env: 'WARREN_TOKEN_ISSUER',
    kind: 'string',
    default: undefined,
    defaultText: 'not checked',
    description: "The issuer a JWT's `iss` must be.",
  },
  {
    key: 'reauthIntervalMs',
    flag: '--reauth-interval',
    env: 'WARREN_REAUTH_INTERVAL',
    kind: 'duration',
    default: 60 * SECOND,
    min: 100,
    max: 24 * 60 * MINUTE,
    description: 'How often SSE and WebSocket streams are authorized again (auth URL or token); a stream the app now refuses is closed.',
  },
  {
    key: 'maxConnectionsPerIp',
    flag: '--max-connections-per-ip',
    env: 'WARREN_MAX_CONNECTIONS_PER_IP',
    kind: 'integer',
    default: 256,
    min: 1,
    max: 1_000_000,
    description: 'Most open subscriptions (streams and waiting polls) per client address.',
  },
  {
    key: 'maxConnectionsPerIdentity',
    flag: '--max-connections-per-identity',
    env: 'WARREN_MAX_CONNECTIONS_PER_IDENTITY',
    kind: 'integer',
    default: 64,
    min: 1,
    max: 1_000_000,
    description: 'Most open subscriptions per identity (the one the app or a token vouched for, else the consumer id).',
  },
  {
    key: 'queueBudget',
    flag: '--queue-budget',
    env: 'WARREN_QUEUE_BUDGET',
    kind: 'integer',
    default: 120,
    min: 1,
    max: 1_000_000,
    description:
      'New queues each client address may cause per minute (a consumer queue not yet known to this gateway, or a channel new to its anonymous fan-out); more is `429 QUEUE_BUDGET_EXCEEDED`. Reconnecting to known queues costs nothing.',
  },
  {
    key: 'maxQueues',
    flag: '--max-queues',
    env: 'WARREN_MAX_QUEUES',
    kind: 'integer',
    default: 100_000,
    min: 1,
    max: 10_000_000,
    description:
      'Most consumer queues (and, counted apart, anonymous channels and wildcard patterns) one gateway keeps in use; past it a new one is `503 QUEUE_LIMIT_REACHED`.',
  },
  {
    key: 'metricsPort',
    flag: '--metrics-port',
    env: 'WARREN_METRICS_PORT',
    kind: 'integer',
    default: undefined,
    defaultText: 'off',
    min: 0,
    max: 65535,
    description:
      'Port of a separate listener that serves `GET /metrics` in the Prometheus text format, without the publish token (0 picks a free one); see "Metrics" in docs/operations.md.',
  },
  {
    key: 'metricsHost',
    flag: '--metrics-host',
    env: 'WARREN_METRICS_HOST',
    kind: 'string',
    default: '127.0.0.1',
    description: 'Address of the metrics listener. Anyone who reaches it reads the metrics: widen it only on a private network.',
  },
  {
    key: 'logLevel',
    flag: '--log-level',
    env: 'WARREN_LOG_LEVEL',
    kind: 'level',
    default: 'info',
    description: `Log level: ${LOG_LEVELS.join(', ')}.`,
  },
  {
    key: 'accessLog',
    flag: '--access-log',
    env: 'WARREN_ACCESS_LOG',
    kind: 'access-log',
    default: 'off',
    description:
      'The access log: one JSON line per request once answered and per stream (SSE, WebSocket) once it ends, with its request id, status, transport, duration and bytes (docs/operations.md, "Logs"). `off`, `stdout`, `stderr`, or `logger` (through the log, at `info`).',
  },
  {
    key: 'amqpHeartbeatMs',
    flag: '--amqp-heartbeat',
    env: 'WARREN_AMQP_HEARTBEAT',
    kind: 'duration',
    default: 4 * SECOND,
    min: 0,
    max: 10 * MINUTE,
    description:
      'AMQP heartbeat interval (whole seconds): a RabbitMQ connection silent for two intervals is taken for dead and replaced, so a stalled or unreachable broker is noticed within three intervals (12 s by default). 0 leaves it to the server (60 s).',
  },
  {
    key: 'brokerTimeoutMs',
    flag: '--broker-timeout',
    env: 'WARREN_BROKER_TIMEOUT',
    kind: 'duration',
    default: 10 * SECOND,
    min: 100,
    max: 10 * MINUTE,
    description:
      'Longest wait for one broker operation (declare, consume, get, publisher confirm); past it the request fails with `BROKER_TIMEOUT`.',
  },
  {
    key: 'reconnectMinMs',
    flag: '--reconnect-min',
    env: 'WARREN_RECONNECT_MIN',
    kind: 'duration',
    default: 100,
    min: 10,
    max: 60 * SECOND,
    description: 'First delay before reconnecting to RabbitMQ (doubles each attempt).',
  },
  {
    key: 'reconnectMaxMs',
    flag: '--reconnect-max',
    env: 'WARREN_RECONNECT_MAX',
    kind: 'duration',
    default: 5 * SECOND,
    min: 10,
    max: 10 * MINUTE,
    description: 'Longest delay between reconnect attempts.',
  },
  {
    key: 'drainDelayMs',
    flag: '--drain-delay',
    env: 'WARREN_DRAIN_DELAY',
    kind: 'duration',
    default: 5 * SECOND,
    min: 0,
    max: 10 * MINUTE,
    description:
      'On SIGTERM (`drain()`), how long the gateway keeps serving after `/_warren/ready` turned 503, before it ends its streams: time for load balancers to stop sending clients.',
  },
  {
    key: 'drainSpreadMs',
    flag: '--drain-spread',
    env: 'WARREN_DRAIN_SPREAD',
    kind: 'duration',
    default: 10 * SECOND,
    min: 0,
    max: 10 * MINUTE,
    description:
      'The window over which a drain spreads reconnects: each SSE stream is ended with its own `retry:` within it, each WebSocket closed with 1012 at its own moment within it.',
  },
  {
    key: 'shutdownTimeoutMs',
    flag: '--shutdown-timeout',
    env: 'WARREN_SHUTDOWN_TIMEOUT',
    kind: 'duration',
    default: 30 * SECOND,
    min: 0,
    max: 60 * MINUTE,
    description:
      'Longest a drain lasts, from SIGTERM: the process exits once no connection is left, or closes what is left when this runs out. At least the drain delay plus the spread.',
  },
];

/**
 * An option value that fails its check. The message names the option the
 * three ways it can be given, `--poll-timeout / WARREN_POLL_TIMEOUT /
 * pollTimeoutMs`, so that a command-line user, a deployment's environment
 * and a library caller each find their own; correct that setting.
 */
export class OptionError extends Error {
  override readonly name = 'OptionError';
}

/** `--poll-timeout / WARREN_POLL_TIMEOUT / pollTimeoutMs`: how every option message names an option. */
export function describeOption(spec: OptionSpec): string {
  return `${spec.flag} / ${spec.env} / ${spec.key}`;
}

function describe(key: OptionSpec['key']): string {
  return describeOption(OPTION_SPECS.find((s) => s.key === key)!);
}

/** 65536 → "64kb", 1048576 → "1mb", 1000 → "1000" (the units `parseBytes` reads). */
export function showBytes(bytes: number): string {
  if (bytes % (1024 * 1024) === 0 && bytes !== 0) return `${bytes / (1024 * 1024)}mb`;
  if (bytes % 1024 === 0 && bytes !== 0) return `${bytes / 1024}kb`;
  return String(bytes);
}

/**
 * The default of a setting as a user would write it: `25s`, `256kb`, `4000`,
 * or the `defaultText` of one that has no plain value (`all interfaces`).
 */
export function showDefault(spec: OptionSpec): string | undefined {
  if (spec.defaultText !== undefined) return spec.defaultText;
  if (spec.default === undefined) return undefined;
  if (typeof spec.default === 'number' && spec.kind === 'duration') return showDuration(spec.default);
  if (typeof spec.default === 'number' && spec.kind === 'bytes') return showBytes(spec.default);
  return String(spec.default);
}

/**
 * Parses a duration: `500ms`, `25s`, `5m`, `2h`, `1d`; a bare number is seconds.
 * @returns milliseconds
 */
export function parseDuration(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text);
  if (m === null) throw new OptionError(`"${text}" is not a duration (e.g. 500ms, 25s, 5m, 2h, 1d; a bare number is seconds)`);
  const unit = { ms: 1, s: SECOND, m: MINUTE, h: 60 * MINUTE, d: DAY }[(m[2] ?? 's') as 'ms'];
  return Math.round(Number(m[1]) * unit);
}

/** Parses a size: `65536`, `64kb`, `1mb` (binary multiples). @returns bytes */
export function parseBytes(text: string): number {
  const m = /^\s*(\d+)\s*(b|kb|kib|mb|mib)?\s*$/i.exec(text);
  if (m === null) throw new OptionError(`"${text}" is not a size (e.g. 65536, 64kb, 1mb)`);
  const unit = { b: 1, kb: 1024, kib: 1024, mb: 1024 * 1024, mib: 1024 * 1024 }[(m[2] ?? 'b').toLowerCase() as 'b'];
  return Number(m[1]) * unit;
}

/** Turns the text of a flag or environment variable into the library's value. */
export function parseOptionText(spec: OptionSpec, text: string): number | string {
  try {
    switch (spec.kind) {
      case 'duration':
        return parseDuration(text);
      case 'bytes':
        return parseBytes(text);
      case 'integer': {
        if (!/^\s*\d+\s*$/.test(text)) throw new OptionError(`"${text}" is not a whole number`);
        return Number(text);
      }
      default:
        return text;
    }
  } catch (err) {
    throw new OptionError(`${describeOption(spec)}: ${(err as Error).message}`);
  }
}

/**
 * Fills in defaults and checks every option once; the rest of the gateway
 * uses the result and never re-checks.
 * @throws OptionError naming the option's flag, variable and key
 */
export function normalizeOptions(input: GatewayOptions = {}): NormalizedOptions {
  const out: Record<string, unknown> = {};
  for (const spec of OPTION_SPECS) {
    const raw = (input as Record<string, unknown>)[spec.key];
    const value = raw === undefined || raw === '' ? spec.default : raw;
    if (value === undefined) continue;
    checkValue(spec, value);
    out[spec.key] = value;
  }
  const options = out as NormalizedOptions;
  checkTogether(options);
  if (input.logger !== undefined) options.logger = adaptLogger(input.logger);
  return options;
}

/**
 * Checks one option's value by its kind and bounds.
 * @throws OptionError naming the option's flag, variable and key
 */
function checkValue(spec: OptionSpec, value: unknown): void {
  const fail = (why: string): never => {
    throw new OptionError(`${describeOption(spec)} ${why}`);
  };
  switch (spec.kind) {
    case 'integer':
    case 'duration':
    case 'bytes': {
      if (typeof value !== 'number' || !Number.isInteger(value)) fail(`must be a whole number, got ${JSON.stringify(value)}`);
      const n = value as number;
      if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) {
        fail(
          spec.kind === 'duration'
            ? `must be between ${showDuration(spec.min!)} and ${showDuration(spec.max!)}, got ${showDuration(n)}`
            : `must be between ${spec.min} and ${spec.max}, got ${n}`,
        );
      }
      break;
    }
    case 'url': {
      if (typeof value !== 'string') fail('must be a string');
      const urls = parseList(value as string);
      if (urls.length === 0) fail('is not a URL');
      for (const text of urls) {
        let url: URL | undefined;
        try {
          url = new URL(text);
        } catch {
          fail(urls.length === 1 ? 'is not a URL' : `has ${JSON.stringify(text.replace(/\/\/[^@/]*@/, '//***@'))}, which is not a URL`);
        }
        if (url!.protocol !== 'amqp:' && url!.protocol !== 'amqps:') fail(`must start with amqp:// or amqps://, got ${url!.protocol}//`);
      }
      break;
    }
    case 'secret': {
      const min = spec.key === 'tokenSecret' ? 32 : 16;
      if (typeof value !== 'string' || value.length < min || value.length > 256 || !/^[\x21-\x7e]+$/.test(value)) {
        fail(`must be ${min} to 256 visible ASCII characters`);
      }
      break;
    }
    case 'level': {
      if (!LOG_LEVELS.includes(value as LogLevel)) fail(`must be one of ${LOG_LEVELS.join(', ')}`);
      break;
    }
    case 'access-log': {
      if (!ACCESS_LOG_TARGETS.includes(value as AccessLogTarget)) fail(`must be one of ${ACCESS_LOG_TARGETS.join(', ')}`);
      break;
    }
    case 'http-url': {
      let url: URL | undefined;
      try {
        url = new URL(String(value));
      } catch {
        fail('is not a URL');
      }
      if (url!.protocol !== 'http:' && url!.protocol !== 'https:') fail(`must start with http:// or https://, got ${url!.protocol}//`);
      break;
    }
    case 'prefixes': {
      for (const prefix of parseList(String(value))) {
        if (!prefix.startsWith('/') || prefix.startsWith('/_')) fail(`has ${JSON.stringify(prefix)}; a prefix starts with "/" (not "/_")`);
      }
      break;
    }
    case 'path-template':
      if (typeof value !== 'string' || (!value.startsWith('/') && !value.startsWith('{channel}')) || /[\s?#]/.test(value)) {
        fail('must be a path (starting with "/" or "{channel}", no spaces, "?" or "#")');
      }
      break;
    case 'method':
      if (!['POST', 'PUT', 'PATCH'].includes(String(value))) fail('must be POST, PUT or PATCH');
      break;
    case 'proxies':
      if (typeof value !== 'string') fail('must be a string');
      try {
        parseProxies(value as string);
      } catch (err) {
        fail((err as Error).message);
      }
      break;
    case 'origins': {
      if (typeof value !== 'string') fail('must be a string');
      for (const origin of parseList(value as string)) {
        if (origin === '*') continue;
        let url: URL | undefined;
        try {
          url = new URL(origin);
        } catch {
          fail(`has ${JSON.stringify(origin)}, which is not an origin`);
        }
        if (url!.origin !== origin) fail(`has ${JSON.stringify(origin)}; an origin is scheme://host[:port], e.g. ${url!.origin}`);
      }
      break;
    }
    case 'file':
      if (typeof value !== 'string' || value.length > 4096 || value.includes('\0')) fail('must be a file path');
      break;
    case 'string': {
      if (typeof value !== 'string' || value.length === 0 || value.length > 255)
        fail('must be a non-empty string of at most 255 characters');
      break;
    }
  }
}

/**
 * Checks the options that only make sense together.
 * @throws OptionError naming both options
 */
function checkTogether(options: NormalizedOptions): void {
  if (options.queueType !== 'classic' && options.queueType !== 'quorum') {
    throw new OptionError(`${describe('queueType')} must be classic or quorum, got ${JSON.stringify(options.queueType)}`);
  }
  if (options.pollTimeoutMs > options.maxPollTimeoutMs) {
    throw new OptionError(
      `${describe('pollTimeoutMs')} (${showDuration(options.pollTimeoutMs)}) exceeds ${describe('maxPollTimeoutMs')} (${showDuration(options.maxPollTimeoutMs)})`,
    );
  }
  if (options.reconnectMinMs > options.reconnectMaxMs) {
    throw new OptionError(
      `${describe('reconnectMinMs')} (${showDuration(options.reconnectMinMs)}) exceeds ${describe('reconnectMaxMs')} (${showDuration(options.reconnectMaxMs)})`,
    );
  }
  if (options.appRoutes !== undefined && options.upstream === undefined) {
    throw new OptionError(`${describe('appRoutes')} needs ${describe('upstream')}: where those routes go`);
  }
  if (options.upstream !== undefined && options.pushRoutes === undefined) {
    throw new OptionError(`${describe('upstream')} needs ${describe('pushRoutes')}: which paths are channels, e.g. /live/`);
  }
  if (options.drainDelayMs + options.drainSpreadMs > options.shutdownTimeoutMs) {
    throw new OptionError(
      `${describe('drainDelayMs')} (${showDuration(options.drainDelayMs)}) plus ${describe('drainSpreadMs')} (${showDuration(options.drainSpreadMs)}) exceed ${describe('shutdownTimeoutMs')} (${showDuration(options.shutdownTimeoutMs)})`,
    );
  }
  if (options.presenceWebhook !== undefined && options.presenceRoutes === undefined) {
    throw new OptionError(`${describe('presenceWebhook')} needs ${describe('presenceRoutes')}: which channels have presence`);
  }
  if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) {
    const [given, missing] = options.tlsCert === undefined ? (['tlsKey', 'tlsCert'] as const) : (['tlsCert', 'tlsKey'] as const);
    throw new OptionError(`${describe(given)} needs ${describe(missing)}: TLS takes both the certificate and its key, or neither`);
  }
  if (options.tokenPublicKey !== undefined && options.tokenJwksUrl !== undefined) {
    throw new OptionError(`${describe('tokenPublicKey')} and ${describe('tokenJwksUrl')}: give one source of JWT keys, not both`);
  }
  const jwtKeys = options.tokenSecret !== undefined || options.tokenPublicKey !== undefined || options.tokenJwksUrl !== undefined;
  for (const key of ['tokenAudience', 'tokenIssuer'] as const) {
    if (options[key] !== undefined && !jwtKeys) {
      throw new OptionError(
        `${describe(key)} needs ${describe('tokenSecret')}, ${describe('tokenPublicKey')} or ${describe('tokenJwksUrl')}: what verifies the JWTs`,
      );
    }
  }
  if (options.managementUrl !== undefined && options.amqpUrl === undefined) {
    throw new OptionError(
      `${describe('managementUrl')} needs ${describe('amqpUrl')}: it counts RabbitMQ's bindings, and the embedded broker counts its own`,
    );
  }
  if (options.amqpHeartbeatMs % SECOND !== 0) {
    throw new OptionError(`${describe('amqpHeartbeatMs')} must be whole seconds, got ${showDuration(options.amqpHeartbeatMs)}`);
  }
}

/** 90000 → "90s", 300000 → "5m", 1500 → "1500ms". */
export function showDuration(ms: number): string {
  if (ms % 60_000 === 0 && ms !== 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** A comma-separated setting as a list (origins, path prefixes, proxy addresses), blanks dropped. */
export function parseList(text: string): string[] {
  return text
    .split(',')
    .map((o) => o.trim())
    .filter((o) => o.length > 0);
}
