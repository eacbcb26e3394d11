/**
 * The client's copies of `@warren/protocol` rules, for the tests that check
 * they agree with the originals. Not part of the API: may change in any release.
 * @internal
 * @packageDocumentation
 */
export { parseServerFrame } from './frames.js';
export type {
  ClientFrame,
  ErrorFrame,
  JsonValue,
  JoinFrame,
  LeaveFrame,
  MessageFrame,
  PresenceFrame,
  PresenceRequestFrame,
  ReplyFrame,
  SendFrame,
  ServerFrame,
  SubscribedFrame,
  SubscribeFrame,
  UnsubscribedFrame,
  UnsubscribeFrame,
} from './frames.js';
export { isTextual } from './util.js';
