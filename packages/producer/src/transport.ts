import type { WarrenMessage } from '@warren/protocol';

/** How a producer reaches the channels: straight to RabbitMQ, or through a gateway. */
export interface PublishTransport {
  /**
   * Resolves once every channel's copy is confirmed, with the channels whose
   * copy reached no queue and no log (a subset of `channels`, in their order).
   */
  send(channels: readonly string[], message: WarrenMessage): Promise<string[]>;
  close(): Promise<void>;
}
