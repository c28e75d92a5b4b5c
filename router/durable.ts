/**
 * Crash-safe replacement of a file (issue 12): write a temporary file beside
 * it, fsync it, rename it over the target, fsync the directory. After either
 * function returns, a crash or power loss leaves the old or the new content,
 * never a mixture or an empty file, and a reboot cannot undo the rename.
 *
 * The synchronous form is for SIGTERM and start-up; the asynchronous form
 * (libuv's thread pool does the writes and fsyncs) for saves while packets
 * flow, so a slow disk never stalls the event loop that forwards them.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';

let seq = 0;
/**
 * Temporary name beside `path` (same directory: rename must not cross file
 * systems), unique per write so a synchronous save at SIGTERM never shares a
 * file with an asynchronous one still in flight.
 */
function tmpName(path: string): string {
  return `${path}.tmp-${process.pid}-${seq++}`;
}

export function writeFileDurableSync(path: string, data: string, mode = 0o600): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = tmpName(path);
  const fd = openSync(tmp, 'w', mode);
  try {
    const buf = Buffer.from(data, 'utf8');
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* the error below is what matters */
    }
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
  const dfd = openSync(dir, 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

/**
 * `mayRename` is asked just before the rename: false (a final synchronous
 * save has been made since) discards this write and resolves false.
 */
export async function writeFileDurable(path: string, data: string, mode = 0o600, mayRename: () => boolean = () => true): Promise<boolean> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = tmpName(path);
  const fh = await open(tmp, 'w', mode);
  try {
    await fh.writeFile(data, 'utf8');
    await fh.sync();
  } catch (e) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fh.close();
  if (!mayRename()) {
    await unlink(tmp).catch(() => undefined);
    return false;
  }
  await rename(tmp, path);
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
  return true;
}
