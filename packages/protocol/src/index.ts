export { ERROR_CODES, WarrenError, isErrorCode } from './errors.js';
export type { ErrorBody, ErrorCode } from './errors.js';
export {
  MAX_CHANNEL_LENGTH,
  MAX_CONSUMER_ID_LENGTH,
  MAX_MESSAGE_ID_LENGTH,
  MAX_EVENT_NAME_LENGTH,
  MAX_CONTENT_TYPE_LENGTH,
  parseChannel,
  isChannel,
  parseConsumerId,
  generateConsumerId,
  parseMessageId,
  generateMessageId,
  parseEventName,
  parseContentType,
  isMessageId,
  isEventName,
  isContentType,
} from './names.js';
export { isPattern, parseChannelPattern, patternMatches, patternUnder } from './patterns.js';
export type { ChannelPattern } from './patterns.js';
export { encodeMessage, isTextual, TEXT_CONTENT_TYPE, JSON_CONTENT_TYPE, BINARY_CONTENT_TYPE } from './message.js';
export type { MessageData, MessageOptions, WarrenMessage } from './message.js';
export {
  DEFAULT_EXCHANGE,
  EXCHANGE_TYPE,
  WILDCARD_EXCHANGE_TYPE,
  WILDCARD_BINDING_KEY,
  wildcardQueueName,
  QUEUE_PREFIX,
  routingKey,
  consumerQueueName,
  consumerQueueArguments,
  parseConsumerQueueName,
  auditExchangeName,
  auditInboxName,
  auditLogName,
  auditInboxArguments,
  MISSED_HEADERS,
  deathFromHeaders,
  deathHeaders,
  fanOutQueueName,
  fanOutQueueArguments,
  channelLogName,
  positionsLogName,
  channelLogArguments,
  logShardOf,
  toWireProperties,
  fromWire,
  confirmError,
} from './wire.js';
export type { ConsumerQueueLimits, Death, DeathReason, LogLimits, WireProperties } from './wire.js';
export { Returns } from './returns.js';
export { RouteCounts, DEFAULT_ROUTE_COUNT_MAX_AGE_MS, routeCountOf, topicMatches } from './route-count.js';
export type { RouteCountOptions, RouteCountState, RouteCountStats } from './route-count.js';
export { HEADERS, PATHS, CONSUMER_COOKIE, CONSUMER_QUERY, BATCH_CONTENT_TYPE } from './http.js';
export {
  MAX_TOKEN_LENGTH,
  MAX_TOKEN_CHANNELS,
  MIN_SECRET_BYTES,
  signChannelToken,
  verifyChannelToken,
  tokenAllows,
  isTokenGrant,
} from './token.js';
export type { ChannelTokenClaims, ChannelTokenInput } from './token.js';
export {
  MAX_SEND_ID_LENGTH,
  MAX_HISTORY,
  CLIENT_FRAMES,
  SERVER_FRAMES,
  ClientFrameError,
  parseClientFrame,
  parseServerFrame,
  parseSince,
  parseHistory,
} from './frames.js';
export type {
  JsonValue,
  ClientFrame,
  SubscribeFrame,
  UnsubscribeFrame,
  SendFrame,
  PresenceRequestFrame,
  ServerFrame,
  PresenceFrame,
  PresenceMember,
  JoinFrame,
  LeaveFrame,
  MessageFrame,
  GapFrame,
  ResetFrame,
  Since,
  SubscribedFrame,
  UnsubscribedFrame,
  ReplyFrame,
  ErrorFrame,
  FrameField,
  FrameFields,
} from './frames.js';
