import { BlockList, isIP } from 'node:net';

/**
 * The proxies in front of the gateway (`--trusted-proxies`): addresses and
 * CIDR ranges, IPv4 and IPv6. Only their `X-Forwarded-*`, `Forwarded` and
 * `X-Real-IP` are believed, and the client is the right-most address of
 * `X-Forwarded-For` that is not one of them (each proxy appends the peer it
 * saw; everything left of that was written by the client).
 */
export class TrustedProxies {
  private readonly list = new BlockList();
  private readonly empty: boolean;

  /** @throws Error naming the entry that is neither an address nor a CIDR range */
  constructor(setting: string | undefined) {
    const entries = parseProxies(setting ?? '');
    this.empty = entries.length === 0;
    for (const { address, prefix, family } of entries) {
      if (prefix === undefined) this.list.addAddress(address, family);
      else this.list.addSubnet(address, prefix, family);
    }
  }

  /** Whether `address` (as a socket or a proxy reports it) is a trusted proxy. */
  has(address: string): boolean {
    if (this.empty) return false;
    const plain = plainAddress(address);
    const family = isIP(plain);
    return family !== 0 && this.list.check(plain, family === 4 ? 'ipv4' : 'ipv6');
  }

  /**
   * The client's address: the peer, unless it is a trusted proxy; then the
   * right-most hop of `X-Forwarded-For` that is not (the left-most when all
   * are). A hop with a port (`203.0.113.7:5555`, `[2001:db8::1]:443`, as some
   * proxies write) counts by its address; a hop that is no address at all
   * (`unknown`) ends the walk at the trusted hop right of it, so that no
   * client picks its own bucket by writing a word.
   */
  clientAddress(peer: string, forwardedFor: string | undefined): string {
    let address = plainAddress(peer);
    if (forwardedFor === undefined || !this.has(address)) return address;
    const hops = forwardedFor
      .split(',')
      .map((hop) => hopAddress(hop.trim()))
      .filter((hop) => hop.length > 0);
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i]!;
      if (isIP(hop) === 0) return address;
      if (!this.has(hop)) return hop;
      address = hop;
    }
    return address;
  }
}

/** An `X-Forwarded-For` hop's address, without the port some proxies add. */
function hopAddress(hop: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(hop);
  if (bracketed !== null) return plainAddress(bracketed[1]!);
  const v4WithPort = /^(\d+\.\d+\.\d+\.\d+):\d+$/.exec(hop);
  return plainAddress(v4WithPort === null ? hop : v4WithPort[1]!);
}

/**
 * An address as the client used it: an IPv4 client of a dual-stack socket
 * (`::ffff:127.0.0.1`) as IPv4, and an IPv6 one without brackets.
 */
export function plainAddress(address: string): string {
  const bare = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(bare);
  return mapped === null ? bare : mapped[1]!;
}

/**
 * The entries of `--trusted-proxies`: `10.0.0.0/8`, `::1/128`, `192.168.1.10`.
 * @throws Error naming the first entry that is neither an address nor a range
 */
export function parseProxies(text: string): Array<{ address: string; prefix: number | undefined; family: 'ipv4' | 'ipv6' }> {
  const out: Array<{ address: string; prefix: number | undefined; family: 'ipv4' | 'ipv6' }> = [];
  for (const entry of text
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e.length > 0)) {
    const slash = entry.indexOf('/');
    const address = plainAddress(slash < 0 ? entry : entry.slice(0, slash));
    const family = isIP(address);
    const max = family === 4 ? 32 : 128;
    const bits = slash < 0 ? undefined : entry.slice(slash + 1);
    if (family === 0 || (bits !== undefined && (!/^\d{1,3}$/.test(bits) || Number(bits) > max))) {
      throw new Error(`has ${JSON.stringify(entry)}, which is neither an IP address nor a CIDR range (10.0.0.0/8, fd00::/8)`);
    }
    out.push({ address, prefix: bits === undefined ? undefined : Number(bits), family: family === 4 ? 'ipv4' : 'ipv6' });
  }
  return out;
}
