import { randomBytes } from 'node:crypto';
import { closeSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Where `warren serve` keeps the publish token it generated, so that
 * `warren publish` on the same machine finds it: `$XDG_RUNTIME_DIR` (private
 * by design), else a directory of this user's own under the temporary
 * directory, mode 0700. The file is named after the port.
 */
export function tokenDir(): string {
  if (process.env.XDG_RUNTIME_DIR) return process.env.XDG_RUNTIME_DIR;
  const uid = process.getuid?.() ?? 'user';
  return join(tmpdir(), `warren-${uid}`);
}

export function tokenFilePath(port: number): string {
  return join(tokenDir(), `warren-${port}.token`);
}

/**
 * Writes the token readable by this user only. A new file is written beside
 * the target and renamed over it, so a file or link planted at the target
 * path is replaced, never written through.
 * @throws Error when the directory is not a private directory of this user
 */
export function writeTokenFile(port: number, token: string): string {
  const dir = tokenDir();
  ensurePrivateDir(dir);
  const path = tokenFilePath(port);
  const temp = join(dir, `.warren-${port}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(temp, 'wx', 0o600);
  try {
    writeSync(fd, `${token}\n`);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, path);
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

function ensurePrivateDir(dir: string): void {
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  if (dir === process.env.XDG_RUNTIME_DIR) return;
  const st = lstatSync(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o077) !== 0) {
    throw new Error(`${dir} is not a private directory of this user (mode 0700); remove it or set XDG_RUNTIME_DIR`);
  }
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
