import type { TransportName, WarrenClientError, WarrenMessage, WarrenSignalEvent } from '../types.js';

/** What a transport gets from the client. Calls from a transport the client dropped are ignored. */
export interface TransportHost {
  readonly baseUrl: URL;
  /** `undefined` for an anonymous client. */
  readonly consumerId: string | undefined;
  readonly pollTimeoutSeconds: number;
  /** The id of the last message received on the channel (to resume after it). */
  lastEventId(channel: string): string | undefined;
  /** The event names the channel's subscriptions listed (for SSE). */
  eventNames(channel: string): string[];
  /** The connection is up. */
  opened(): void;
  /** The connection works (a stream subscribed, a message or an answer arrived): the backoff starts over. */
  healthy(): void;
  deliver(message: WarrenMessage): void;
  /** A logged channel's `gap` or `reset` signal. */
  signal(kind: 'gap' | 'reset', event: WarrenSignalEvent): void;
  /** A problem that does not end the connection. */
  report(error: WarrenClientError): void;
  /** The connection is over: the client closes the transport and reconnects. */
  fail(error: WarrenClientError, details?: { code?: number; reason?: string; retryAfterMs?: number }): void;
  /** A backoff delay for a retry inside the transport. */
  retryDelay(attempt: number): number;
}

/**
 * One connection attempt of one kind. The constructor may throw (the
 * transport cannot be used here) but never calls the host synchronously.
 */
export interface ClientTransport {
  readonly name: TransportName;
  /** Start receiving a channel (or, if it already does, pick up new event names). */
  add(channel: string): void;
  /** Stop receiving a channel. */
  remove(channel: string): void;
  /** Release every socket, request and timer. No host calls after this. */
  close(): void;
}

export const noop = (): void => undefined;
