import { request } from 'undici';
import type { Logger } from '../logger.js';
import type { PresenceChange } from './view.js';

export interface PresenceWebhookOptions {
  url: string;
  /** `Authorization: Bearer <token>` on each POST (the publish token), when set. */
  token: string | undefined;
  timeoutMs: number;
  /** One POST per interval at most, with what changed since the last. */
  intervalMs: number;
}

/** One join or leave as the webhook receives it. */
export interface WebhookEvent extends PresenceChange {
  /** When this process saw it: an ISO 8601 time. */
  at: string;
}

/** Most events waiting for the application; past it the oldest are dropped (and counted). */
export const MAX_WEBHOOK_BACKLOG = 10_000;
/** Most events in one POST. */
export const MAX_WEBHOOK_BATCH = 1000;

/**
 * Tells the application of joins and leaves: `POST <url>` with
 * `{"process", "events": [{type, channel, identity, at}]}`, one request per
 * interval at most, in order. A failed POST (no answer, not 2xx) is tried
 * again with the next batch; the backlog is bounded.
 */
export class PresenceWebhook {
  readonly stats = { posts: 0, failures: 0, dropped: 0 };
  private backlog: WebhookEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private posting: Promise<void> | undefined;

  constructor(
    private readonly options: PresenceWebhookOptions,
    private readonly log: Logger,
    private readonly process: string,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => void this.post(), this.options.intervalMs);
    this.timer.unref();
  }

  add(change: PresenceChange): void {
    this.backlog.push({ type: change.type, channel: change.channel, identity: change.identity, at: new Date().toISOString() });
    if (this.backlog.length > MAX_WEBHOOK_BACKLOG) {
      const over = this.backlog.length - MAX_WEBHOOK_BACKLOG;
      this.backlog.splice(0, over);
      this.stats.dropped += over;
      this.log.warn('presence webhook backlog full: oldest events dropped', { dropped: over });
    }
  }

  /** Stops the timer and sends what is left: one try, waited for at most 2 s. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    const last = (async (): Promise<void> => {
      await this.posting;
      await this.post();
    })();
    await Promise.race([last, new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
  }

  private post(): Promise<void> {
    if (this.posting !== undefined || this.backlog.length === 0) return this.posting ?? Promise.resolve();
    const batch = this.backlog.splice(0, MAX_WEBHOOK_BATCH);
    this.posting = this.send(batch)
      .then(
        () => {
          this.stats.posts++;
        },
        (err: unknown) => {
          this.stats.failures++;
          // Back in front, in order, for the next try.
          this.backlog.unshift(...batch);
          this.trim();
          this.log.warn('presence webhook failed; the events are sent again next time', {
            error: err instanceof Error ? err.message : String(err),
            events: batch.length,
          });
        },
      )
      .finally(() => (this.posting = undefined));
    return this.posting;
  }

  private trim(): void {
    const over = this.backlog.length - MAX_WEBHOOK_BACKLOG;
    if (over <= 0) return;
    this.backlog.splice(0, over);
    this.stats.dropped += over;
  }

  private async send(events: WebhookEvent[]): Promise<void> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.options.token !== undefined) headers.authorization = `Bearer ${this.options.token}`;
    const res = await request(this.options.url, {
      method: 'POST',
      headers,
      body: JSON.stringify({ process: this.process, events }),
      signal: AbortSignal.timeout(this.options.timeoutMs),
    });
    await res.body.dump();
    if (res.statusCode < 200 || res.statusCode > 299) throw new Error(`the webhook answered ${res.statusCode}`);
  }
}
