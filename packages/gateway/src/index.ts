export { createGateway, MAX_URL_LENGTH } from './gateway.js';
export type { Gateway, GatewayStats, CreateGatewayOptions, EmbedOptions } from './gateway.js';
export type { PublishAnswer } from './publish-endpoint.js';
export type {
  PushConnection,
  PushHandler,
  PushUpgrade,
  SubscribeOptions,
  UpgradeDecider,
  UpgradeDecision,
  UpgradeKind,
  WriteOptions,
} from './push/handler.js';
export { WARREN_PROTOCOL, CLOSE_CODES } from './transports/websocket.js';
export {
  normalizeOptions,
  parseDuration,
  parseBytes,
  parseOptionText,
  showDuration,
  showBytes,
  showDefault,
  describeOption,
  OPTION_SPECS,
  OptionError,
  LOG_LEVELS,
} from './options.js';
export type { GatewayOptions, NormalizedOptions, OptionSpec } from './options.js';
export { createLogger, silentLogger } from './logger.js';
export type { Logger, LogLevel, PinoLike } from './logger.js';
export type { AccessLine, AccessLogTarget, AccessTransport, ConsumerKind } from './access-log.js';
export { parseRequestId, REQUEST_ID_HEADER, MAX_REQUEST_ID_LENGTH } from './request-id.js';
export { serveClusterMetrics } from './cluster-metrics.js';
export type { MetricsListener } from './metrics.js';
export { QueueNotFoundError } from './broker/broker.js';
export { ExchangeTypeError } from './broker/rabbitmq.js';
export type { WildcardStats } from './sources/wildcard-fan-out.js';
export type {
  Broker,
  BrokerStats,
  BrokerKind,
  Delivery,
  Subscription,
  ConsumeOptions,
  ConsumerEnd,
  LogEntry,
  LogPosition,
  AuditLayout,
  ReadLogOptions,
} from './broker/broker.js';
export type { LongPollStats } from './transports/long-poll.js';
export { parseMissedQuery, MAX_MISSED_LIMIT, DEFAULT_MISSED_LIMIT } from './audit.js';
export type { MissedEntry, MissedPage, MissedQuery } from './audit.js';
