/**
 * Warren's browser client. Loads as a plain ES module (no bare imports) and
 * runs in Node with injected `ws`, `eventsource` and `fetch`.
 *
 * @example
 * import { WarrenClient } from './warren-client/index.js';
 * const client = new WarrenClient({ url: 'http://localhost:4000' });
 * client.subscribe('/greetings', (m) => console.log(m.data));
 */
export { WarrenClient } from './client.js';
export {
  CONSUMER_ID_STORAGE_KEY,
  DEFAULT_TRANSPORTS,
  WarrenClientError,
  type EventSourceConstructor,
  type EventSourceLike,
  type FetchLike,
  type FetchResponseLike,
  type StorageLike,
  type SubscribeOptions,
  type Subscription,
  type TransportName,
  type WarrenClientErrorCode,
  type WarrenClientEventMap,
  type WarrenClientOptions,
  type WarrenCloseEvent,
  type WarrenMessage,
  type WarrenOpenEvent,
  type WarrenSignalEvent,
  type WebSocketConstructor,
  type WebSocketLike,
} from './types.js';
