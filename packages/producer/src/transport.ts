import type { WarrenMessage } from '@warren/protocol';

/** What a transport learned of a confirmed publish. */
export interface Sent {
  /** The channels whose copy reached no queue and no log (a subset of the channels sent to, in their order). */
  unrouted: string[];
  /** Per channel, the queues and logs its copy reached, when the transport was told (a gateway that counts). */
  routes?: Record<string, number>;
}

/** How a producer reaches the channels: straight to RabbitMQ, or through a gateway. */
export interface PublishTransport {
  /** Resolves once every channel's copy is confirmed. */
  send(channels: readonly string[], message: WarrenMessage): Promise<Sent>;
  close(): Promise<void>;
}
