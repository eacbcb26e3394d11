import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Where `warren serve` keeps the publish token it generated, so that a
 * producer on the same machine (`warren publish`, `new Producer()`) finds it:
 * `$XDG_RUNTIME_DIR` (private by design), else a directory of this user's own
 * under the temporary directory, mode 0700.
 */
export function tokenDir(): string {
  if (process.env.XDG_RUNTIME_DIR) return process.env.XDG_RUNTIME_DIR;
  const uid = process.getuid?.() ?? 'user';
  return join(tmpdir(), `warren-${uid}`);
}

/** The token file of the gateway on this machine's `port`: `warren-<port>.token` in {@link tokenDir}. */
export function tokenFilePath(port: number): string {
  return join(tokenDir(), `warren-${port}.token`);
}

/** The token file for a gateway URL, or `undefined` when the URL is not on this machine. */
export function tokenFileFor(url: URL): string | undefined {
  if (!['localhost', '127.0.0.1', '[::1]', '::1'].includes(url.hostname)) return undefined;
  return tokenFilePath(url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80);
}

/** The token in a token file; `undefined` when there is no such file or it is empty. */
export function readTokenFile(path: string): string | undefined {
  try {
    const token = readFileSync(path, 'utf8').trim();
    return token.length > 0 ? token : undefined;
  } catch {
    return undefined;
  }
}
