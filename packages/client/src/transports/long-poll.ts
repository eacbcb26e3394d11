import { WarrenClientError, type FetchLike, type FetchResponseLike, type WarrenMessage } from '../types.js';
import { bytesToBase64, errorText, gatewayUrl, isPattern, isTextual } from '../util.js';
import type { ClientTransport, TransportHost } from './transport.js';

/** Grace on top of the poll timeout before a poll that got no answer counts as lost. */
const DEADLINE_GRACE_MS = 15_000;

interface Poller {
  controller: AbortController | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * One poll loop per channel: `GET /<channel>?consumer_id=…&timeout=…`, one
 * message per answer. The first poll of a connection asks `timeout=0`, so
 * the gateway answers at once and the transport knows it works. The
 * gateway acknowledges a message once its answer is written, so on a
 * channel that is not logged there is nothing to resume (the consumer's
 * queue keeps the rest). Every poll sends `since=` the id of the last message
 * received, so that a logged channel resumes from there (docs/channel-logs.md).
 */
export class LongPollTransport implements ClientTransport {
  readonly name = 'long-poll';
  private readonly pollers = new Map<string, Poller>();
  private done = false;
  /** A poll was answered on this connection. */
  private opened = false;

  constructor(
    private readonly host: TransportHost,
    private readonly fetch: FetchLike | null | undefined,
    channels: Iterable<string>,
  ) {
    if (typeof fetch !== 'function')
      throw new WarrenClientError('TRANSPORT_UNAVAILABLE', 'no fetch implementation', { transport: 'long-poll' });
    for (const channel of channels) this.add(channel);
  }

  add(channel: string): void {
    if (this.done || this.pollers.has(channel)) return;
    if (isPattern(channel)) {
      // A poll reads one consumer queue; a pattern has none (docs/wildcards.md).
      queueMicrotask(() => {
        if (this.done) return;
        this.host.report(
          new WarrenClientError('WILDCARD_NOT_SUPPORTED', `long-poll cannot read the pattern ${channel}; use WebSocket or SSE`, {
            transport: 'long-poll',
            channel,
          }),
        );
      });
      return;
    }
    const poller: Poller = { controller: undefined, timer: undefined };
    this.pollers.set(channel, poller);
    // Never calls the host synchronously: the first await comes first.
    void this.loop(channel, poller);
  }

  remove(channel: string): void {
    const poller = this.pollers.get(channel);
    if (poller === undefined) return;
    this.pollers.delete(channel);
    clearTimeout(poller.timer);
    poller.controller?.abort();
  }

  close(): void {
    this.done = true;
    for (const channel of [...this.pollers.keys()]) this.remove(channel);
  }

  private live(channel: string, poller: Poller): boolean {
    return !this.done && this.pollers.get(channel) === poller;
  }

  private async loop(channel: string, poller: Poller): Promise<void> {
    let timeout = 0;
    let conflicts = 0;
    await Promise.resolve();
    while (this.live(channel, poller)) {
      const controller = new AbortController();
      poller.controller = controller;
      let deadlineHit = false;
      const deadline = setTimeout(
        () => {
          deadlineHit = true;
          controller.abort();
        },
        timeout * 1000 + DEADLINE_GRACE_MS,
      );
      let res: FetchResponseLike;
      let body: ArrayBuffer | undefined;
      try {
        res = await this.fetch!(
          gatewayUrl(this.host.baseUrl, channel, {
            consumer_id: this.host.consumerId,
            timeout: String(timeout),
            since: this.host.lastEventId(channel),
          }),
          {
            method: 'GET',
            signal: controller.signal,
          },
        );
        if (res.status === 200) body = await res.arrayBuffer();
      } catch (err) {
        if (!this.live(channel, poller)) return;
        const why = deadlineHit ? 'no answer in time' : errorText(err);
        const code = this.opened ? 'CONNECTION_LOST' : 'CONNECT_FAILED';
        return this.fail(new WarrenClientError(code, `long-poll on ${channel} failed: ${why}`, { transport: 'long-poll', channel }));
      } finally {
        clearTimeout(deadline);
        poller.controller = undefined;
      }
      if (!this.live(channel, poller)) return;
      timeout = this.host.pollTimeoutSeconds;

      if (res.status === 200 || res.status === 204) {
        conflicts = 0;
        this.opened = true;
        this.host.opened();
        this.host.healthy();
        if (body !== undefined) this.host.deliver(message(channel, res, body));
        continue;
      }

      const { code, text } = await readError(res);
      if (!this.live(channel, poller)) return;
      const error = new WarrenClientError(code ?? `HTTP_${res.status}`, text ?? `long-poll on ${channel} answered ${res.status}`, {
        transport: 'long-poll',
        channel,
        status: res.status,
      });
      if (res.status === 409) {
        // Another poller uses this consumer id on this channel: say so, and take turns.
        this.host.report(error);
        await new Promise<void>((resolve) => (poller.timer = setTimeout(resolve, this.host.retryDelay(conflicts++))));
        poller.timer = undefined;
        continue;
      }
      const retryAfter = Number(res.headers.get('retry-after'));
      return this.fail(error, Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined);
    }
  }

  private fail(error: WarrenClientError, retryAfterMs?: number): void {
    if (this.done) return;
    this.close();
    this.host.fail(error, retryAfterMs === undefined ? {} : { retryAfterMs });
  }
}

function message(channel: string, res: FetchResponseLike, body: ArrayBuffer): WarrenMessage {
  const contentType = res.headers.get('content-type') ?? 'application/octet-stream';
  const bytes = new Uint8Array(body);
  const msg: WarrenMessage = {
    channel,
    id: res.headers.get('message-id') ?? '',
    contentType,
    data: '',
    transport: 'long-poll',
  };
  const event = res.headers.get('warren-event');
  if (event !== null) msg.event = event;
  if (isTextual(contentType)) {
    msg.data = new TextDecoder().decode(bytes);
  } else {
    msg.binary = bytes;
    msg.data = bytesToBase64(bytes);
  }
  return msg;
}

async function readError(res: FetchResponseLike): Promise<{ code?: string; text?: string }> {
  try {
    const json = JSON.parse(await res.text()) as { code?: unknown; message?: unknown };
    return {
      ...(typeof json.code === 'string' ? { code: json.code } : {}),
      ...(typeof json.message === 'string' ? { text: json.message } : {}),
    };
  } catch {
    return {};
  }
}
