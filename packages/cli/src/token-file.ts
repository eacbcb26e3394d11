import { randomBytes } from 'node:crypto';
import { closeSync, lstatSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { tokenDir, tokenFilePath } from '@warren/producer';

/**
 * Writes the token where `warren publish` and `new Producer()` on this
 * machine look for it (`tokenFilePath` of `@warren/producer`), readable by
 * this user only. A new file is written beside the target and renamed over
 * it, so a file or link planted at the target path is replaced, never
 * written through.
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
