import { mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Where `warren serve` keeps the publish token it generated, so that
 * `warren publish` on the same machine finds it: a file readable by the
 * same user only, named after the port.
 */
export function tokenFilePath(port: number): string {
  const dir = process.env.XDG_RUNTIME_DIR ?? tmpdir();
  return join(dir, `warren-${port}.token`);
}

export function writeTokenFile(port: number, token: string): string {
  const path = tokenFilePath(port);
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, `${token}\n`, { mode: 0o600 });
  return path;
}

export function readTokenFile(port: number): string | undefined {
  try {
    const token = readFileSync(tokenFilePath(port), 'utf8').trim();
    return token.length > 0 ? token : undefined;
  } catch {
    return undefined;
  }
}

export function removeTokenFile(port: number): void {
  rmSync(tokenFilePath(port), { force: true });
}

/** `true` for a URL that points at this machine. */
export function isLoopback(url: URL): boolean {
  return ['localhost', '127.0.0.1', '[::1]', '::1'].includes(url.hostname);
}

/** The port of an http(s) URL, with the scheme's default. */
export function portOf(url: URL): number {
  if (url.port !== '') return Number(url.port);
  return url.protocol === 'https:' ? 443 : 80;
}
