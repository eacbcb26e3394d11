/**
 * Wildcard subscriptions (docs/wildcards.md): a pattern is a channel
 * followed by one last segment `*` (exactly one more segment) or `**` (one
 * or more segments, any depth). `/stocks/*` matches `/stocks/acme` but not
 * `/stocks/eu/acme`; `/stocks/**` matches both. Nothing else is a pattern:
 * no `*` inside a segment (`/st*`), none before the last segment.
 *
 * @module
 */
import { WarrenError } from './errors.js';
import { isChannel, MAX_CHANNEL_LENGTH } from './names.js';

/** A parsed pattern: the channel it sits under and how deep it reaches. */
export interface ChannelPattern {
  /** The pattern as given (`/stocks/*`). */
  readonly pattern: string;
  /** The channel under which it matches (`/stocks`). */
  readonly base: string;
  /** `one` for `*`, `any` for `**`. */
  readonly depth: 'one' | 'any';
}

/** `true` when `input` asks for a pattern (it holds a `*`, which no channel does); {@link parseChannelPattern} says whether it is a valid one. */
export function isPattern(input: string): boolean {
  return input.includes('*');
}

/**
 * Checks a wildcard pattern.
 * @throws WarrenError `INVALID_PATTERN`
 * @example parseChannelPattern('/stocks/*') // { pattern: '/stocks/*', base: '/stocks', depth: 'one' }
 */
export function parseChannelPattern(input: unknown): ChannelPattern {
  const fail = (why: string): never => {
    throw new WarrenError('INVALID_PATTERN', `invalid wildcard pattern: ${why}`);
  };
  if (typeof input !== 'string') return fail('not a string');
  if (input.length > MAX_CHANNEL_LENGTH) return fail(`longer than ${MAX_CHANNEL_LENGTH} characters`);
  const depth = input.endsWith('/**') ? 'any' : input.endsWith('/*') ? 'one' : undefined;
  if (depth === undefined)
    return fail('the wildcard must be the whole last segment: "/stocks/*" (one segment) or "/stocks/**" (any depth)');
  const base = input.slice(0, input.length - (depth === 'any' ? 3 : 2));
  if (base.includes('*')) return fail('only the last segment may be a wildcard');
  if (!isChannel(base)) return fail(`"${base}" before the wildcard is not a valid channel`);
  return { pattern: input, base, depth };
}

/** `true` when `channel` is one of the channels `pattern` matches. */
export function patternMatches(pattern: ChannelPattern, channel: string): boolean {
  const { base } = pattern;
  if (channel.length <= base.length + 1 || channel[base.length] !== '/' || !channel.startsWith(base)) return false;
  return pattern.depth === 'any' || channel.indexOf('/', base.length + 1) < 0;
}

/**
 * `true` when every channel `pattern` can match starts with `prefix` (a
 * prefix ending in `/`, as `--wildcard-routes` and token prefix grants
 * `/users/42/*` give them): `/stocks/` covers `/stocks/*`, `/stocks/eu/**`,
 * not `/stock*` nor `/other/*`.
 */
export function patternUnder(pattern: ChannelPattern, prefix: string): boolean {
  return `${pattern.base}/`.startsWith(prefix);
}
