/** One identity's presence on one channel as one gateway process holds it. */
export interface MemberState {
  /** Open subscriptions in that process (0 during the grace period). */
  connections: number;
  /** When it joined there, ms since the epoch. */
  since: number;
}

/** A change of who is present on a channel, over every process this one knows of. */
export interface PresenceChange {
  type: 'join' | 'leave';
  channel: string;
  identity: string;
}

/**
 * What caused a change, which decides who tells the webhook: this
 * process's own subscriptions (`local`: this process tells); another
 * process's members dropped because it fell silent, or back once it is
 * heard again, when this process took it upon itself to tell (`silence`);
 * anything else another process announced (`remote`: not this process's to tell).
 */
export type ChangeCause = 'local' | 'remote' | 'silence';

/** The members of one process, by channel and identity. */
export type ProcessMembers = Map<string, Map<string, MemberState>>;

/**
 * Who is present where, per gateway process, and over all of them: an
 * identity is present on a channel while at least one process holds it
 * there. A change of that (0 → 1 process, 1 → 0) is a join or a leave; the
 * same member moving between processes is neither.
 */
export class PresenceView {
  private readonly processes = new Map<string, ProcessMembers>();
  /** How many processes hold each identity, by channel. */
  private readonly holders = new Map<string, Map<string, number>>();

  constructor(private readonly onChange: (change: PresenceChange, cause: ChangeCause) => void) {}

  /** Process ids this view holds members of (or an empty entry for). */
  get processIds(): IterableIterator<string> {
    return this.processes.keys();
  }

  has(process: string): boolean {
    return this.processes.has(process);
  }

  /** Makes sure `process` has an entry, even without members. */
  touch(process: string): void {
    if (!this.processes.has(process)) this.processes.set(process, new Map());
  }

  /** Sets (or with `undefined`, removes) one member of `process`. */
  set(process: string, channel: string, identity: string, state: MemberState | undefined, cause: ChangeCause): void {
    let channels = this.processes.get(process);
    if (channels === undefined) {
      if (state === undefined) return;
      this.processes.set(process, (channels = new Map()));
    }
    let members = channels.get(channel);
    const had = members?.has(identity) ?? false;
    if (state !== undefined) {
      if (members === undefined) channels.set(channel, (members = new Map()));
      members.set(identity, state);
      if (!had) this.count(channel, identity, +1, cause);
    } else if (had) {
      members!.delete(identity);
      if (members!.size === 0) channels.delete(channel);
      this.count(channel, identity, -1, cause);
    }
  }

  /** Replaces every member of `process` with `next`: only what differs changes. */
  replace(process: string, next: ProcessMembers, cause: ChangeCause): void {
    const current = this.processes.get(process);
    if (current !== undefined) {
      for (const [channel, members] of [...current]) {
        for (const identity of [...members.keys()]) {
          if (next.get(channel)?.has(identity) !== true) this.set(process, channel, identity, undefined, cause);
        }
      }
    }
    this.touch(process);
    for (const [channel, members] of next) {
      for (const [identity, state] of members) this.set(process, channel, identity, state, cause);
    }
  }

  /** Removes `process` and its members. */
  remove(process: string, cause: ChangeCause): void {
    this.replace(process, new Map(), cause);
    this.processes.delete(process);
  }

  /** The members of `process` (live: do not change it). */
  membersOf(process: string): ProcessMembers | undefined {
    return this.processes.get(process);
  }

  /** Who is on `channel` over every process: connections summed, the earliest `since`. */
  members(channel: string): Array<{ identity: string } & MemberState> {
    const out = new Map<string, MemberState>();
    for (const channels of this.processes.values()) {
      const members = channels.get(channel);
      if (members === undefined) continue;
      for (const [identity, state] of members) {
        const seen = out.get(identity);
        if (seen === undefined) out.set(identity, { ...state });
        else {
          seen.connections += state.connections;
          seen.since = Math.min(seen.since, state.since);
        }
      }
    }
    return [...out]
      .map(([identity, state]) => ({ identity, ...state }))
      .sort((a, b) => (a.identity < b.identity ? -1 : a.identity > b.identity ? 1 : 0));
  }

  /** Whether `identity` is present on `channel` in any process. */
  present(channel: string, identity: string): boolean {
    return (this.holders.get(channel)?.get(identity) ?? 0) > 0;
  }

  /** Channels with at least one member, and the members over all of them (an identity counted once per channel). */
  size(): { channels: number; members: number } {
    let members = 0;
    for (const identities of this.holders.values()) members += identities.size;
    return { channels: this.holders.size, members };
  }

  private count(channel: string, identity: string, delta: 1 | -1, cause: ChangeCause): void {
    let identities = this.holders.get(channel);
    if (identities === undefined) this.holders.set(channel, (identities = new Map()));
    const before = identities.get(identity) ?? 0;
    const after = before + delta;
    if (after <= 0) {
      identities.delete(identity);
      if (identities.size === 0) this.holders.delete(channel);
    } else {
      identities.set(identity, after);
    }
    if (before === 0 && after > 0) this.onChange({ type: 'join', channel, identity }, cause);
    else if (before > 0 && after <= 0) this.onChange({ type: 'leave', channel, identity }, cause);
  }
}
