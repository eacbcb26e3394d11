/**
 * The consumers of a fault run, one per transport, each written the way a
 * careful client would be and no more: they retry what the README says to
 * retry and resume with the ids they saw. The plain `eventsource` client is
 * not helped at all: when it closes for good, that is recorded.
 *
 * Every consumer reports to the {@link History}: when its queue existed,
 * each message it got (by `seq`), and incidents (late polls, silent streams).
 */
import { Agent, request, type ClientRequest, type IncomingMessage } from 'node:http';
import { EventSource } from 'eventsource';
import WebSocket from 'ws';
import type { History, Transport } from './history.js';

export interface ConsumerContext {
  /** `http://127.0.0.1:<port>` of the gateway (the same across its restarts). */
  base: string;
  channel: string;
  history: History;
  /** Long-poll `?timeout=` in seconds. */
  pollTimeoutS: number;
  /** A stream that hears nothing (not even a heartbeat or ping) this long is stalled. */
  stallMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function seqOf(data: string): number | undefined {
  try {
    const seq = (JSON.parse(data) as { seq?: unknown }).seq;
    return typeof seq === 'number' ? seq : undefined;
  } catch {
    return undefined;
  }
}

export abstract class Consumer {
  protected running = true;
  constructor(
    readonly name: string,
    readonly transport: Transport,
    readonly identified: boolean,
    protected readonly ctx: ConsumerContext,
  ) {
    ctx.history.addConsumer(name, transport, identified);
  }
  abstract start(): void;
  stop(): void {
    this.running = false;
  }
  /** Called at the start of each phase; only the EventSource uses it. */
  phaseStarted(): void {}
  protected got(data: string): void {
    const seq = seqOf(data);
    if (seq !== undefined) this.ctx.history.delivered(this.name, seq);
  }
}

/** `GET /<channel>?timeout=N` in a loop, with `Consumer-Id`; retries 503 (after Retry-After), 409 and network errors. */
export class LongPollConsumer extends Consumer {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 1 });
  private current: ClientRequest | undefined;

  constructor(name: string, ctx: ConsumerContext) {
    super(name, 'long-poll', true, ctx);
  }

  start(): void {
    void this.loop();
  }

  override stop(): void {
    super.stop();
    this.current?.destroy();
    this.agent.destroy();
  }

  private async loop(): Promise<void> {
    const timeoutMs = this.ctx.pollTimeoutS * 1000;
    const { pollSlackMs } = this.ctx.history.bounds;
    while (this.running) {
      const t0 = Date.now();
      let status = 0;
      let retryAfterS = 0;
      try {
        const res = await new Promise<{ status: number; body: string; retryAfter: string | undefined }>((resolve, reject) => {
          const req = request(
            `${this.ctx.base}${this.ctx.channel}?timeout=${this.ctx.pollTimeoutS}`,
            { agent: this.agent, headers: { 'consumer-id': this.name } },
            (res: IncomingMessage) => {
              let body = '';
              res.setEncoding('utf8');
              res.on('data', (c: string) => (body += c));
              res.on('end', () =>
                resolve({ status: res.statusCode ?? 0, body, retryAfter: res.headers['retry-after'] as string | undefined }),
              );
              res.on('error', reject);
            },
          );
          this.current = req;
          // A bound on our side so the run always ends: well past the hang bound.
          req.setTimeout(timeoutMs + pollSlackMs + 20_000, () => req.destroy(new Error('client gave up')));
          req.on('error', reject);
          req.end();
        });
        status = res.status;
        retryAfterS = Number(res.retryAfter ?? 0);
        const took = Date.now() - t0;
        if (took > timeoutMs + pollSlackMs) {
          this.ctx.history.incident({ type: 'poll-late', at: Date.now(), consumer: this.name, tookMs: took, timeoutMs });
        }
        if (status === 200 || status === 204) this.ctx.history.ready(this.name, t0);
        if (status === 200) this.got(res.body);
      } catch {
        const took = Date.now() - t0;
        if (this.running && took > timeoutMs + pollSlackMs) {
          this.ctx.history.incident({ type: 'poll-late', at: Date.now(), consumer: this.name, tookMs: took, timeoutMs });
        }
        if (this.running) await sleep(250);
        continue;
      }
      if (status === 503) await sleep(Math.max(1, retryAfterS || 1) * 1000);
      else if (status !== 200 && status !== 204) await sleep(250);
    }
  }
}

/**
 * An SSE reader over raw HTTP: identified (`Consumer-Id`) or anonymous. An
 * identified one resumes with `Last-Event-ID` after any disconnect.
 */
export class RawSseConsumer extends Consumer {
  private req: ClientRequest | undefined;
  private lastEventId: string | undefined;
  private lastHeardAt = Date.now();
  private open = false;
  private watchdog: NodeJS.Timeout | undefined;

  constructor(name: string, identified: boolean, ctx: ConsumerContext) {
    super(name, identified ? 'sse' : 'anonymous', identified, ctx);
  }

  start(): void {
    this.watchdog = setInterval(() => this.checkStall(), 1000);
    this.connect();
  }

  override stop(): void {
    super.stop();
    clearInterval(this.watchdog);
    this.req?.destroy();
    for (const r of this.held) r.destroy();
  }

  private checkStall(): void {
    const silent = Date.now() - this.lastHeardAt;
    if (this.open && silent > this.ctx.stallMs) {
      this.ctx.history.incident({ type: 'stream-stalled', at: Date.now(), consumer: this.name, silentMs: silent });
      this.req?.destroy();
    }
  }

  private readonly abandoned = new WeakSet<ClientRequest>();
  private readonly held = new Set<ClientRequest>();

  /**
   * Opens a new connection (with `Last-Event-ID`) while the current one stays
   * open and unread for `holdMs`, as when a client gives up on a connection
   * that the gateway still thinks is alive (a half-open TCP connection after a
   * network change). The old one is destroyed after `holdMs`.
   */
  reconnectLeavingOldOpen(holdMs: number): void {
    const old = this.req;
    if (old) {
      this.abandoned.add(old);
      old.socket?.pause();
      this.held.add(old);
      setTimeout(() => {
        old.destroy();
        this.held.delete(old);
      }, holdMs);
    }
    this.open = false;
    this.connect();
  }

  private connect(): void {
    if (!this.running) return;
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (this.identified) headers['consumer-id'] = this.name;
    if (this.identified && this.lastEventId !== undefined) headers['last-event-id'] = this.lastEventId;
    let retried = false;
    const retry = (ms: number) => {
      if (retried || this.abandoned.has(req)) return;
      retried = true;
      this.open = false;
      if (this.running) setTimeout(() => this.connect(), ms);
    };
    const req = request(`${this.ctx.base}${this.ctx.channel}`, { agent: false, headers }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        retry(res.statusCode === 503 ? 1000 : 250);
        return;
      }
      this.open = true;
      this.lastHeardAt = Date.now();
      this.ctx.history.ready(this.name);
      res.setEncoding('utf8');
      let buf = '';
      let data: string[] = [];
      let id: string | undefined;
      res.on('data', (chunk: string) => {
        this.lastHeardAt = Date.now();
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).replace(/\r$/, '');
          buf = buf.slice(nl + 1);
          if (line === '') {
            if (data.length > 0) {
              if (id !== undefined) this.lastEventId = id;
              this.got(data.join('\n'));
            }
            data = [];
            id = undefined;
          } else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          else if (line.startsWith('id:')) id = line.slice(3).replace(/^ /, '');
        }
      });
      res.on('end', () => retry(250));
      res.on('error', () => retry(250));
      res.on('close', () => retry(250));
    });
    this.req = req;
    req.on('error', () => retry(250));
    req.end();
  }
}

/**
 * A `warren.v1` WebSocket on `/_warren/ws?consumer_id=…`, resubscribing with
 * `lastEventId` after any close.
 */
export class WsConsumer extends Consumer {
  private ws: WebSocket | undefined;
  private lastEventId: string | undefined;
  private lastHeardAt = Date.now();
  private open = false;
  private watchdog: NodeJS.Timeout | undefined;
  private pausedUntil = 0;

  constructor(name: string, ctx: ConsumerContext) {
    super(name, 'ws', true, ctx);
  }

  /**
   * Makes this a slow reader on a link that then breaks (a phone in a
   * tunnel): it stops reading its socket for `pauseMs`, then drops the
   * connection with whatever the network still held for it, and reconnects
   * with the id of the last message it did read. Anything lost that way was
   * acknowledged by the gateway before the client had it.
   */
  async readSlowlyThenDrop(pauseMs: number): Promise<void> {
    const ws = this.ws;
    const socket = (ws as unknown as { _socket?: { pause(): void } } | undefined)?._socket;
    if (!ws || !socket) return;
    this.pausedUntil = Date.now() + pauseMs;
    socket.pause();
    await sleep(pauseMs);
    this.lastHeardAt = Date.now(); // the silence was ours
    ws.terminate(); // unread bytes in the socket buffers are gone with it
  }

  start(): void {
    this.watchdog = setInterval(() => {
      const silent = Date.now() - this.lastHeardAt;
      if (this.open && silent > this.ctx.stallMs && Date.now() > this.pausedUntil) {
        this.ctx.history.incident({ type: 'stream-stalled', at: Date.now(), consumer: this.name, silentMs: silent });
        this.ws?.terminate();
      }
    }, 1000);
    this.connect();
  }

  override stop(): void {
    super.stop();
    clearInterval(this.watchdog);
    this.ws?.terminate();
  }

  private connect(): void {
    if (!this.running) return;
    const url = `${this.ctx.base.replace(/^http/, 'ws')}/_warren/ws?consumer_id=${encodeURIComponent(this.name)}`;
    const ws = new WebSocket(url, 'warren.v1');
    this.ws = ws;
    const heard = () => (this.lastHeardAt = Date.now());
    const subscribe = () => {
      if (ws.readyState !== WebSocket.OPEN) return;
      const frame: Record<string, string> = { type: 'subscribe', channel: this.ctx.channel };
      if (this.lastEventId !== undefined) frame.lastEventId = this.lastEventId;
      ws.send(JSON.stringify(frame));
    };
    ws.on('open', () => {
      heard();
      subscribe();
    });
    ws.on('ping', heard);
    ws.on('message', (raw) => {
      heard();
      let frame: { type?: string; id?: string; data?: string; channel?: string; code?: string };
      try {
        frame = JSON.parse(raw.toString());
      } catch {
        return;
      }
      if (frame.type === 'subscribed') {
        this.open = true;
        this.ctx.history.ready(this.name);
      } else if (frame.type === 'message' && typeof frame.data === 'string') {
        if (frame.id !== undefined) this.lastEventId = frame.id;
        this.got(frame.data);
      } else if (frame.type === 'error' && frame.channel === this.ctx.channel) {
        // The subscription failed or ended (the broker is away): subscribe again.
        this.open = false;
        this.ctx.history.incident({
          type: 'note',
          at: Date.now(),
          text: `${this.name}: error frame ${frame.code}; subscribing again in 1 s`,
        });
        setTimeout(subscribe, 1000);
      }
    });
    ws.on('error', () => undefined); // 'close' follows
    ws.on('close', () => {
      this.open = false;
      if (this.running) setTimeout(() => this.connect(), 250);
    });
  }
}

/**
 * The `eventsource` package (v4, spec-following) with `?consumer_id=`, left
 * to itself. When it closes for good (readyState CLOSED), the incident is
 * recorded; at the next phase the runner opens a new one with the same
 * consumer id, as a page reload would (noted in the history).
 */
export class EventSourceConsumer extends Consumer {
  private es: EventSource | undefined;
  private closedForGood = false;

  constructor(name: string, ctx: ConsumerContext) {
    super(name, 'eventsource', true, ctx);
  }

  start(): void {
    this.closedForGood = false;
    const es = new EventSource(`${this.ctx.base}${this.ctx.channel}?consumer_id=${encodeURIComponent(this.name)}`);
    this.es = es;
    es.onopen = () => this.ctx.history.ready(this.name);
    es.onmessage = (e) => this.got(e.data);
    es.onerror = (e) => {
      if (es.readyState === es.CLOSED && this.running && !this.closedForGood) {
        this.closedForGood = true;
        const detail = `${e.message ?? 'error'}${e.code !== undefined ? `, status ${e.code}` : ''}`;
        this.ctx.history.incident({ type: 'es-closed', at: Date.now(), consumer: this.name, detail });
      }
    };
  }

  override phaseStarted(): void {
    if (this.closedForGood && this.running) {
      this.ctx.history.incident({
        type: 'note',
        at: Date.now(),
        text: `${this.name} had closed for good; the runner opened a new EventSource with the same consumer id`,
      });
      this.start();
    }
  }

  override stop(): void {
    super.stop();
    this.es?.close();
  }
}
