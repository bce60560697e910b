// Write-then-rename, so a crash or an error never leaves a half-written file at the
// final path: readers see the old file or the complete new one.

import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { basename, dirname, join } from 'node:path';

export async function writeAtomic(path: string, write: (handle: fsp.FileHandle) => Promise<void>): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const handle = await fsp.open(tmp, 'wx');
  let ok = false;
  try {
    await write(handle);
    await handle.sync();
    ok = true;
  } finally {
    await handle.close();
    if (!ok) await fsp.rm(tmp, { force: true });
  }
  try {
    await fsp.rename(tmp, path);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
}

/** JSON with 2-space indent and a trailing newline, like transformers' save_pretrained. */
export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  const text = `${JSON.stringify(value, null, 2)}\n`;
  await writeAtomic(path, async (h) => {
    await h.writeFile(text, 'utf8');
  });
}

/** Read and parse a JSON file; errors name the file. */
export async function readJsonFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await fsp.readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `${path}: file not found` : `${path}: cannot read (${(err as Error).message})`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new Error(`${path}: not valid JSON (${(err as Error).message})`);
  }
}

export async function fileExists(path: string): Promise<boolean> {
  try {
    await fsp.access(path);
    return true;
  } catch {
    return false;
  }
}

/** FileHandle.write may write less than asked; loop until every byte is out. */
export async function writeAll(handle: fsp.FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done);
    done += bytesWritten;
  }
}
