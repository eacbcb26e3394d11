import type { WarrenMessage } from '@warren/protocol';

/** How a producer reaches the channels: straight to RabbitMQ, or through a gateway. */
export interface PublishTransport {
  /** Resolves once every channel's copy is confirmed. */
  send(channels: readonly string[], message: WarrenMessage): Promise<void>;
  close(): Promise<void>;
}
