import { isPattern, parseChannel, parseChannelPattern, patternUnder, WarrenError } from '@warren/protocol';
import { parseList } from './options.js';

/**
 * Which channels may be subscribed by pattern (`--wildcard-routes`,
 * docs/wildcards.md). Every place a subscription names its channel (the
 * path of a stream, a `subscribe` frame, `conn.subscribe()`) goes through
 * {@link parse}.
 */
export class WildcardRoutes {
  private readonly prefixes: string[];

  constructor(wildcardRoutes: string | undefined) {
    this.prefixes = wildcardRoutes === undefined ? [] : parseList(wildcardRoutes);
  }

  /** Whether any route takes patterns (then the exchange is a topic exchange). */
  get enabled(): boolean {
    return this.prefixes.length > 0;
  }

  /**
   * A channel, or a pattern this gateway serves.
   * @throws WarrenError `INVALID_CHANNEL`, `INVALID_PATTERN`, `WILDCARD_NOT_ALLOWED`
   */
  parse(input: string): string {
    if (!isPattern(input)) return parseChannel(input);
    const pattern = parseChannelPattern(input);
    if (!this.prefixes.some((prefix) => patternUnder(pattern, prefix))) {
      throw new WarrenError(
        'WILDCARD_NOT_ALLOWED',
        this.enabled
          ? `${input} is not under the wildcard routes (${this.prefixes.join(', ')})`
          : `${input} is a pattern, and this gateway has no wildcard routes (--wildcard-routes)`,
      );
    }
    return pattern.pattern;
  }
}

/**
 * Refuses a pattern where only channels are served.
 * @throws WarrenError `WILDCARD_NOT_SUPPORTED`
 */
export function refusePattern(channel: string, where: string): void {
  if (isPattern(channel)) {
    throw new WarrenError(
      'WILDCARD_NOT_SUPPORTED',
      `${where} takes a channel, not a wildcard pattern; subscribe to patterns with SSE or a warren.v1 WebSocket`,
    );
  }
}
