/** HTTP names shared by the gateway, the producer's HTTP transport and clients. */
export const HEADERS = {
  /** Request: names the consumer. Response: the consumer id in use. */
  consumerId: 'consumer-id',
  /** Response to a long-poll, request to the publish endpoint: the message id. */
  messageId: 'message-id',
  /** Response to a long-poll, request to the publish endpoint: the event name. */
  event: 'warren-event',
  /**
   * In the answer of the application's auth endpoint: the identity it vouches
   * for. On requests from the gateway to the application (client messages):
   * the consumer that owns the queue (`<identity>` or `<identity>/<client id>`).
   */
  warrenConsumerId: 'warren-consumer-id',
  /** On requests from the gateway to the application: the vouched identity alone (absent when nobody vouched). */
  identity: 'warren-identity',
  /** On auth requests to the application: the consumer id the client asked for (its wish, not an identity). */
  requestedId: 'warren-requested-consumer-id',
} as const;

/** Query parameter naming the consumer (alternative to the header). */
export const CONSUMER_QUERY = 'consumer_id';
/** Cookie naming the consumer (set by the gateway when it assigns an id). */
export const CONSUMER_COOKIE = 'warren_consumer_id';

/** The gateway's own endpoints; the `/_warren` prefix is never a channel. */
export const PATHS = {
  prefix: '/_warren/',
  publish: '/_warren/publish',
  /** Several messages in one request, one JSON object a line (`application/x-ndjson`). */
  publishBatch: '/_warren/publish/batch',
  /** Liveness: 200 while the process runs, whatever the broker does. */
  live: '/_warren/live',
  /** Readiness: 200 while the broker is connected and the gateway is not draining, else 503. */
  ready: '/_warren/ready',
  /** The older name of {@link PATHS.ready}, kept as an alias. */
  health: '/_warren/health',
  stats: '/_warren/stats',
  /** Who is subscribed to a presence channel (`?channel=`); needs the publish token. */
  presence: '/_warren/presence',
  /** What identified consumers of audited channels missed (GET, with the publish token). */
  missed: '/_warren/missed',
  /** WebSocket endpoint that subscribes to nothing until told (`warren.v1`). */
  socket: '/_warren/ws',
} as const;

/** The content type of a publish batch: one JSON object a line. */
export const BATCH_CONTENT_TYPE = 'application/x-ndjson';
