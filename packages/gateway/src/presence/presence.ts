import { randomBytes } from 'node:crypto';
import type { PresenceMember } from '@warren/protocol';
import type { Broker, Subscription } from '../broker/broker.js';
import type { Logger } from '../logger.js';
import {
  decodeAnnouncement,
  encodeAnnouncement,
  FULL_PART_MEMBERS,
  PRESENCE_ROUTING_KEY,
  type Announcement,
  type Entry,
} from './announcement.js';
import { PresenceView, type ChangeCause, type PresenceChange, type ProcessMembers } from './view.js';
import { PresenceWebhook } from './webhook.js';

export type { PresenceChange } from './view.js';

export interface PresenceOptions {
  /** Path prefixes of the presence channels. */
  routes: readonly string[];
  /** How often this process announces itself (a beat; deltas go at once). */
  intervalMs: number;
  /** How long a member whose last connection closed stays present. */
  graceMs: number;
  /** The application's URL for joins and leaves, batched per interval. */
  webhook: string | undefined;
  /** Sent to the webhook as `Authorization: Bearer` (the publish token), when set. */
  webhookToken: string | undefined;
  /** Longest wait for the webhook's answer. */
  webhookTimeoutMs: number;
}

export interface PresenceStats {
  /** This process's id in the announcements (and its queue `warren:presence:<id>`). */
  process: string;
  /** Gateway processes whose members this one holds, itself included. */
  processes: number;
  /** Presence channels with members, and members over them (over every process). */
  channels: number;
  members: number;
  /** Members held by this process's own subscriptions (in grace too). */
  local: number;
  announcementsSent: number;
  announcementsReceived: number;
  webhookPosts: number;
  webhookFailures: number;
  /** Webhook events dropped because the application did not take them (the backlog is bounded). */
  webhookDropped: number;
}

/** A process's members are dropped when it was not heard from for this many of its intervals. */
export const EXPIRY_INTERVALS = 3;
/** Local changes are gathered this long into one announcement. */
const FLUSH_MS = 20;

/** One open subscription counted on a presence channel: `leave()` once it closes (idempotent). */
export interface PresenceTicket {
  leave(): void;
}

const NO_TICKET: PresenceTicket = { leave: () => undefined };

/** An identity on a channel in this process: its open subscriptions, and its grace timer once none is left. @internal */
export class LocalMember {
  connections = 0;
  readonly since = Date.now();
  grace: NodeJS.Timeout | undefined;
  constructor(
    readonly channel: string,
    readonly identity: string,
  ) {}
}

class Ticket implements PresenceTicket {
  private left = false;
  constructor(
    private readonly presence: Presence,
    private readonly member: LocalMember,
  ) {}

  leave(): void {
    if (this.left) return;
    this.left = true;
    this.presence.exit(this.member);
  }
}

/** Another gateway process, as heard on the broker. */
interface Peer {
  /** Its last change applied; `undefined` until its state is known. */
  seq: number | undefined;
  expiresAt: number;
  /** When it was last asked for its whole state (asks are rate-limited). */
  askedAt: number;
  /** A `full` announcement being put together from its parts. */
  assembling: { seq: number; next: number; members: ProcessMembers } | undefined;
  /**
   * It had fallen silent and this process told the webhook its members left:
   * their return is this process's to tell too (until its whole state is in).
   */
  returning: boolean;
}

/** Processes dropped for silence that are remembered (whether their leaves were reported), oldest forgotten first. */
const MAX_REMEMBERED = 1000;

/**
 * Presence: who (which identities vouched for by the app or a token) is
 * subscribed to the channels under `--presence-routes`, over every gateway
 * process on the broker, with join and leave events (docs/presence.md).
 *
 * Each process is the authority on its own subscriptions. It announces
 * changes on the broker at once (a `delta`), a beat every interval, and its
 * whole state on request; every process keeps the others' members and drops
 * those of a process it has not heard from for {@link EXPIRY_INTERVALS}
 * intervals, so a process that dies loses its members within about 3.5
 * intervals without anyone seeing it die. A member whose last subscription
 * closes stays present for the grace period, so that a reload or a blip is
 * neither a leave nor a join. On the embedded broker there is one process:
 * nothing is announced.
 */
export class Presence {
  readonly id = randomBytes(8).toString('hex');
  private readonly view: PresenceView;
  private readonly local = new Map<string, LocalMember>();
  private readonly peers = new Map<string, Peer>();
  /** Processes dropped for silence, and whether this process reported their members' leaves. */
  private readonly silenced = new Map<string, boolean>();
  private readonly watchers = new Map<string, Set<(change: PresenceChange) => void>>();
  private readonly webhook: PresenceWebhook | undefined;
  private readonly counters = { announcementsSent: 0, announcementsReceived: 0 };
  /** Whether announcements go over the broker (not on the embedded one: a single process). */
  private readonly bus: boolean;
  private seq = 0;
  private readonly pending = new Map<string, Entry>();
  private flushTimer: NodeJS.Timeout | undefined;
  private fullTimer: NodeJS.Timeout | undefined;
  private beatTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private subscription: Subscription | undefined;
  private connecting: Promise<void> | undefined;
  /** Announcements go out one at a time, in order: a receiver applies them in the order they were made. */
  private sending: Promise<void> = Promise.resolve();
  private started = false;
  private closed = false;
  /** While draining: no member of this process leaves before this time (ms since the epoch). */
  private holdUntil = 0;

  constructor(
    private readonly broker: Broker,
    private readonly log: Logger,
    private readonly options: PresenceOptions,
  ) {
    this.view = new PresenceView((change, cause) => this.changed(change, cause));
    this.view.touch(this.id);
    this.bus = broker.kind !== 'memory';
    this.webhook =
      options.webhook === undefined
        ? undefined
        : new PresenceWebhook(
            { url: options.webhook, token: options.webhookToken, timeoutMs: options.webhookTimeoutMs, intervalMs: options.intervalMs },
            log,
            this.id,
          );
  }

  /** Whether `channel` is under the presence routes. */
  isPresenceChannel(channel: string): boolean {
    return this.options.routes.some((prefix) => channel.startsWith(prefix));
  }

  /** Starts announcing (on RabbitMQ: once the broker is connected, and again after each reconnect). Idempotent. */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.webhook?.start();
    if (!this.bus) return;
    this.broker.on('ready', this.onReady);
    this.broker.on('lost', this.onLost);
    this.beatTimer = setInterval(() => this.beat(), this.options.intervalMs);
    this.beatTimer.unref();
    this.sweepTimer = setInterval(() => this.sweep(), Math.max(50, Math.floor(this.options.intervalMs / 2)));
    this.sweepTimer.unref();
    if (this.broker.ready) this.onReady();
  }

  /**
   * Counts one open subscription of `identity` to `channel` in this
   * process. The identity joins (for everyone) unless it was present already,
   * here or in another process.
   * @returns the ticket whose `leave()` counts the subscription closed
   */
  enter(channel: string, identity: string): PresenceTicket {
    if (this.closed) return NO_TICKET;
    const key = `${channel}\n${identity}`;
    let member = this.local.get(key);
    if (member === undefined) {
      member = new LocalMember(channel, identity);
      this.local.set(key, member);
    }
    clearTimeout(member.grace);
    member.grace = undefined;
    member.connections++;
    this.announce(member);
    return new Ticket(this, member);
  }

  /** A subscription closed: past the grace period without another one, its identity leaves this process. */
  exit(member: LocalMember): void {
    if (this.closed) return;
    member.connections--;
    this.announce(member);
    if (member.connections > 0) return;
    const drop = (): void => {
      member.grace = undefined;
      if (member.connections > 0 || this.closed) return;
      const key = `${member.channel}\n${member.identity}`;
      if (this.local.get(key) !== member) return;
      this.local.delete(key);
      this.view.set(this.id, member.channel, member.identity, undefined, 'local');
      this.queue(key, [member.channel, member.identity]);
    };
    const grace = this.graceLeft();
    if (grace === 0) return drop();
    member.grace = setTimeout(drop, grace);
    member.grace.unref();
  }

  /**
   * The process drains: its clients reconnect elsewhere over the next
   * `spreadMs` (an SSE client waits out its `retry:`), so none of its
   * members leaves before the spread and a grace period are over, here or
   * (after close) in the other processes.
   */
  holdFor(spreadMs: number): void {
    this.holdUntil = Math.max(this.holdUntil, Date.now() + spreadMs + this.options.graceMs);
  }

  /** How long a member whose last subscription closed now stays. */
  private graceLeft(): number {
    return Math.max(this.options.graceMs, this.holdUntil - Date.now());
  }

  /**
   * Calls `listener` with each join and leave on `channel` (as this process
   * sees them: over every process it knows of).
   * @returns the function that stops it
   */
  watch(channel: string, listener: (change: PresenceChange) => void): () => void {
    let set = this.watchers.get(channel);
    if (set === undefined) this.watchers.set(channel, (set = new Set()));
    set.add(listener);
    return () => {
      const current = this.watchers.get(channel);
      if (current === undefined) return;
      current.delete(listener);
      if (current.size === 0) this.watchers.delete(channel);
    };
  }

  /** Who is on `channel`, over every gateway process: by identity, connections summed, the earliest join. */
  members(channel: string): PresenceMember[] {
    return this.view
      .members(channel)
      .map((m) => ({ identity: m.identity, connections: m.connections, since: new Date(m.since).toISOString() }));
  }

  stats(): PresenceStats {
    const { channels, members } = this.view.size();
    const hook = this.webhook?.stats ?? { posts: 0, failures: 0, dropped: 0 };
    return {
      process: this.id,
      processes: this.peers.size + 1,
      channels,
      members,
      local: this.local.size,
      ...this.counters,
      webhookPosts: hook.posts,
      webhookFailures: hook.failures,
      webhookDropped: hook.dropped,
    };
  }

  /**
   * Stops: tells the other processes to keep this one's members for the
   * grace period (time for its clients to reconnect elsewhere), sends the
   * webhook what is left, and stops announcing. Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of [this.flushTimer, this.fullTimer, this.beatTimer, this.sweepTimer, this.retryTimer]) {
      clearTimeout(timer);
      clearInterval(timer);
    }
    for (const member of this.local.values()) clearTimeout(member.grace);
    this.broker.off('ready', this.onReady);
    this.broker.off('lost', this.onLost);
    if (this.bus && this.subscription !== undefined) {
      this.send({ t: 'bye', p: this.id, grace: Math.min(this.graceLeft(), 3_600_000) });
      await Promise.race([this.sending, new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
      await this.subscription.cancel().catch(() => undefined);
      this.subscription = undefined;
    }
    await this.webhook?.close();
  }

  private readonly onReady = (): void => {
    if (this.closed || this.subscription !== undefined) return;
    this.connecting ??= this.connect().finally(() => (this.connecting = undefined));
  };

  private readonly onLost = (): void => {
    this.subscription = undefined;
  };

  /** Declares this process's queue for announcements, consumes it, asks everyone for their state and sends its own. */
  private async connect(): Promise<void> {
    const queue = `warren:presence:${this.id}`;
    try {
      // A dead process's queue goes by itself (x-expires) once nothing consumes it.
      await this.broker.declareFanOutQueue(queue, PRESENCE_ROUTING_KEY, {
        expiresMs: Math.max(60_000, 10 * this.options.intervalMs),
        maxLength: 10_000,
      });
      const subscription = await this.broker.consume(queue, {
        prefetch: 256,
        onMessage: (delivery) => {
          delivery.ack();
          const announcement = decodeAnnouncement(delivery.message.body);
          if (announcement !== undefined) this.receive(announcement);
        },
        onEnd: (end) => {
          this.subscription = undefined;
          // broker-lost: connected again on 'ready'.
          if (end.reason !== 'broker-lost') this.retry();
        },
      });
      if (this.closed) {
        await subscription.cancel();
        return;
      }
      this.subscription = subscription;
      this.send({ t: 'ask', p: this.id });
      this.scheduleFull();
    } catch (err) {
      this.log.warn('presence could not subscribe to announcements; retrying', { error: err instanceof Error ? err.message : String(err) });
      this.retry();
    }
  }

  private retry(): void {
    if (this.closed) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (this.broker.ready) this.onReady();
    }, this.options.intervalMs);
    this.retryTimer.unref();
  }

  /** An announcement of another process. */
  private receive(a: Announcement): void {
    if (a.p === this.id || this.closed) return;
    this.counters.announcementsReceived++;
    if (a.t === 'ask') {
      if (a.to === undefined || a.to === this.id) this.scheduleFull();
      return;
    }
    if (a.t === 'bye') {
      const peer = this.peers.get(a.p);
      // Neither sooner (its clients need the time to come back elsewhere) nor later: it sends nothing more.
      if (peer !== undefined) peer.expiresAt = Date.now() + a.grace;
      return;
    }
    let peer = this.peers.get(a.p);
    if (peer === undefined) {
      const reported = this.silenced.get(a.p);
      this.silenced.delete(a.p);
      peer = { seq: undefined, expiresAt: 0, askedAt: 0, assembling: undefined, returning: reported === true };
      this.peers.set(a.p, peer);
      this.view.touch(a.p);
    }
    const cause: ChangeCause = peer.returning ? 'silence' : 'remote';
    peer.expiresAt = Date.now() + EXPIRY_INTERVALS * a.every;
    switch (a.t) {
      case 'beat':
        if (peer.seq !== a.seq) this.askFull(a.p, peer);
        return;
      case 'delta':
        if (peer.seq !== undefined && a.seq <= peer.seq) return;
        // A gap (lost announcements, or a process just met): apply what came, and ask for the whole state.
        if (peer.seq === undefined || a.seq !== peer.seq + 1) this.askFull(a.p, peer);
        peer.seq = a.seq;
        for (const entry of a.m) {
          const [channel, identity, connections, since] = entry;
          this.view.set(a.p, channel, identity, connections === undefined ? undefined : { connections, since: since! }, cause);
        }
        return;
      case 'full': {
        // A whole state older than a change applied already (it waited in the queue): the next beat says what is current.
        if (peer.seq !== undefined && a.seq < peer.seq) return;
        if (a.part === 0) peer.assembling = { seq: a.seq, next: 0, members: new Map() };
        const whole = peer.assembling;
        if (whole === undefined || whole.seq !== a.seq || whole.next !== a.part) {
          peer.assembling = undefined;
          return;
        }
        whole.next++;
        for (const [channel, identity, connections, since] of a.m) {
          if (connections === undefined) continue;
          let members = whole.members.get(channel);
          if (members === undefined) whole.members.set(channel, (members = new Map()));
          members.set(identity, { connections, since: since! });
        }
        if (!a.last) return;
        peer.assembling = undefined;
        peer.seq = a.seq;
        this.view.replace(a.p, whole.members, cause);
        peer.returning = false;
        return;
      }
    }
  }

  private askFull(process: string, peer: Peer): void {
    const now = Date.now();
    if (now - peer.askedAt < this.options.intervalMs) return;
    peer.askedAt = now;
    this.send({ t: 'ask', p: this.id, to: process });
  }

  /**
   * Drops the members of every process not heard from in time. Their
   * leaves are told to the webhook by one process: the one with the
   * smallest id of those left, if it is connected to the broker itself (a
   * process that is cut off reports nobody's leaving).
   */
  private sweep(): void {
    const now = Date.now();
    for (const [process, peer] of [...this.peers]) {
      if (peer.expiresAt > now) continue;
      this.peers.delete(process);
      const reports = this.subscription !== undefined && this.smallest();
      this.silenced.set(process, reports);
      if (this.silenced.size > MAX_REMEMBERED) this.silenced.delete(this.silenced.keys().next().value!);
      this.log.info('presence: a gateway process was not heard from; its members are dropped', { process });
      this.view.remove(process, reports ? 'silence' : 'remote');
    }
  }

  /** Whether this process has the smallest id of those it knows. */
  private smallest(): boolean {
    for (const process of this.peers.keys()) if (process < this.id) return false;
    return true;
  }

  private beat(): void {
    if (this.subscription === undefined) return;
    this.flush();
    this.send({ t: 'beat', p: this.id, seq: this.seq, every: this.options.intervalMs });
  }

  /** A local member's count changed: in the view at once, to the others with the next flush. */
  private announce(member: LocalMember): void {
    const state = { connections: member.connections, since: member.since };
    this.view.set(this.id, member.channel, member.identity, state, 'local');
    this.queue(`${member.channel}\n${member.identity}`, [member.channel, member.identity, state.connections, state.since]);
  }

  private queue(key: string, entry: Entry): void {
    if (!this.bus) return;
    this.pending.set(key, entry);
    if (this.flushTimer !== undefined) return;
    this.flushTimer = setTimeout(() => this.flush(), FLUSH_MS);
    this.flushTimer.unref();
  }

  /** Sends the gathered local changes (a `delta` each 2,000), each one change further. */
  private flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.pending.size === 0) return;
    const entries = [...this.pending.values()];
    this.pending.clear();
    for (let i = 0; i < entries.length; i += FULL_PART_MEMBERS) {
      this.seq++;
      // Not connected: the others see the gap in `seq` on the next beat and ask for the whole state.
      if (this.subscription !== undefined) {
        this.send({ t: 'delta', p: this.id, seq: this.seq, every: this.options.intervalMs, m: entries.slice(i, i + FULL_PART_MEMBERS) });
      }
    }
  }

  /** Sends the whole state soon (asks from several processes at once get one answer). */
  private scheduleFull(): void {
    if (this.fullTimer !== undefined || this.closed) return;
    this.fullTimer = setTimeout(() => {
      this.fullTimer = undefined;
      this.sendFull();
    }, FLUSH_MS);
    this.fullTimer.unref();
  }

  private sendFull(): void {
    if (this.subscription === undefined) return;
    this.flush();
    const entries: Entry[] = [];
    for (const m of this.local.values()) entries.push([m.channel, m.identity, m.connections, m.since]);
    const every = this.options.intervalMs;
    const parts = Math.max(1, Math.ceil(entries.length / FULL_PART_MEMBERS));
    for (let part = 0; part < parts; part++) {
      const m = entries.slice(part * FULL_PART_MEMBERS, (part + 1) * FULL_PART_MEMBERS);
      this.send({ t: 'full', p: this.id, seq: this.seq, every, part, last: part === parts - 1, m });
    }
  }

  private send(a: Announcement): void {
    const message = encodeAnnouncement(a);
    this.counters.announcementsSent++;
    this.sending = this.sending
      .then(async () => {
        await this.broker.publish(PRESENCE_ROUTING_KEY, message);
      })
      .catch((err: unknown) =>
        this.log.debug('presence announcement not sent', { type: a.t, error: err instanceof Error ? err.message : String(err) }),
      );
  }

  /** A join or leave over every process: to the watchers of its channel, and to the webhook when this process reports it. */
  private changed(change: PresenceChange, cause: ChangeCause): void {
    for (const listener of this.watchers.get(change.channel) ?? []) {
      try {
        listener(change);
      } catch (err) {
        this.log.error('presence listener failed', { error: String(err) });
      }
    }
    if (this.webhook !== undefined && this.reports(cause)) this.webhook.add(change);
  }

  /**
   * Whether this process tells the webhook of a change: of its own
   * members, always; of another process's, only those it took upon itself
   * (a silent process's members leaving, and coming back: see {@link sweep}).
   */
  private reports(cause: ChangeCause): boolean {
    return cause !== 'remote';
  }
}
