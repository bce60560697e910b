// safetensors files: a lazy reader (header first, then only the byte ranges asked for) and
// an atomic writer (temp file in the same directory, fsync, rename).

import { promises as fsp } from 'node:fs';
import { endianness } from 'node:os';
import { writeAll, writeAtomic } from './atomic-file.js';
import {
  SafetensorsFormatError,
  encodeHeader,
  parseHeader,
  parseHeaderLength,
  type SafetensorsHeader,
  type TensorInfo,
} from './safetensors-header.js';
import {
  TENSOR_DTYPES,
  isTensorDType,
  numElements,
  shapeToString,
  tensorBytes,
  toF32Tensor,
  typedView,
  type F32Tensor,
  type Tensor,
} from './tensor.js';

export { SafetensorsFormatError, type TensorInfo } from './safetensors-header.js';

// Typed arrays use host byte order and safetensors is little-endian; every machine we run on
// is little-endian, so refuse loudly rather than byte-swap silently.
function assertLittleEndian(): void {
  if (endianness() !== 'LE') throw new Error('safetensors I/O needs a little-endian host');
}

/** Read exactly `length` bytes at `position` into a fresh (aligned, transferable) buffer. */
async function readExactly(handle: fsp.FileHandle, position: number, length: number, file: string, what: string): Promise<Uint8Array> {
  const out = new Uint8Array(new ArrayBuffer(length));
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(out, done, length - done, position + done);
    if (bytesRead === 0) {
      throw new SafetensorsFormatError(file, `${what}: file ended after ${position + done} bytes, expected ${position + length} (truncated?)`);
    }
    done += bytesRead;
  }
  return out;
}

export class SafetensorsReader {
  private readonly byName: Map<string, TensorInfo>;
  private bytes = 0;
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly handle: fsp.FileHandle,
    private readonly header: SafetensorsHeader,
  ) {
    this.byName = new Map(header.tensors.map((t) => [t.name, t]));
  }

  /** Open a file and validate its header; no tensor data is read yet. */
  static async open(path: string): Promise<SafetensorsReader> {
    assertLittleEndian();
    const handle = await fsp.open(path, 'r');
    try {
      const { size } = await handle.stat();
      const prefix = await readExactly(handle, 0, Math.min(8, size), path, 'header length');
      const len = parseHeaderLength(prefix, size, path);
      const json = await readExactly(handle, 8, len, path, 'header');
      const reader = new SafetensorsReader(path, handle, parseHeader(json, size, path));
      reader.bytes = 8 + len;
      return reader;
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  get metadata(): Readonly<Record<string, string>> {
    return this.header.metadata;
  }

  /** Tensor names in file (data offset) order. */
  get names(): string[] {
    return this.header.tensors.map((t) => t.name);
  }

  /** Bytes this reader has read from disk so far (header included). */
  get bytesRead(): number {
    return this.bytes;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): TensorInfo {
    const info = this.byName.get(name);
    if (!info) {
      const known = this.names;
      const list = known.length <= 8 ? known.join(', ') : `${known.slice(0, 8).join(', ')}, … (${known.length} in all)`;
      throw new Error(`${this.path}: no tensor named ${name}; the file has ${list || 'no tensors'}`);
    }
    return info;
  }

  /** The tensor's bytes exactly, read from disk on demand. */
  async readRaw(name: string): Promise<Uint8Array> {
    if (this.closed) throw new Error(`${this.path}: reader is closed (reading tensor ${name})`);
    const info = this.info(name);
    const len = info.end - info.begin;
    const bytes = await readExactly(this.handle, this.header.dataStart + info.begin, len, this.path, `tensor ${name}`);
    this.bytes += len;
    return bytes;
  }

  async read(name: string): Promise<Tensor> {
    const info = this.info(name);
    if (!isTensorDType(info.dtype)) {
      throw new Error(`${this.path}: tensor ${name} has dtype ${info.dtype}, which has no typed view; readable dtypes: ${TENSOR_DTYPES.join(', ')} (use readRaw for the bytes)`);
    }
    const bytes = await this.readRaw(name);
    return { dtype: info.dtype, shape: [...info.shape], data: typedView(info.dtype, bytes) } as Tensor;
  }

  /** Read a float tensor and decode it to float32. */
  async readFloat32(name: string): Promise<F32Tensor> {
    return toF32Tensor(await this.read(name), `${this.path}: tensor ${name}`);
  }

  async readAll(): Promise<Map<string, Tensor>> {
    const out = new Map<string, Tensor>();
    for (const name of this.names) out.set(name, await this.read(name));
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }
}

/** Open, read every tensor, close. For small files; large ones want SafetensorsReader. */
export async function readSafetensors(path: string): Promise<{ metadata: Record<string, string>; tensors: Map<string, Tensor> }> {
  const reader = await SafetensorsReader.open(path);
  try {
    return { metadata: { ...reader.metadata }, tensors: await reader.readAll() };
  } finally {
    await reader.close();
  }
}

export type TensorEntries = ReadonlyMap<string, Tensor> | Iterable<readonly [string, Tensor]>;

function checkTensor(name: string, t: Tensor, file: string): void {
  if (!isTensorDType(t.dtype)) {
    throw new Error(`${file}: tensor ${name} has dtype ${String(t.dtype)}: expected one of ${TENSOR_DTYPES.join(', ')}`);
  }
  const n = numElements(t.shape);
  if (t.data.length !== n) {
    throw new Error(`${file}: tensor ${name} has ${t.data.length} elements but its shape ${shapeToString(t.shape)} needs ${n}`);
  }
}

/** Byte size of the file writeSafetensors would produce (for shard planning). */
export function safetensorsFileSize(tensors: TensorEntries, metadata?: Record<string, string>): number {
  const entries = [...tensors].map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape }));
  const { prefix, layout } = encodeHeader(entries, metadata);
  return prefix.byteLength + (layout.at(-1)?.end ?? 0);
}

/**
 * Write tensors to `path` atomically: a temp file beside it is written tensor by tensor
 * (no whole-file buffer), synced, then renamed over `path`. On failure the temp file is
 * removed, so readers only ever see the old file or the complete new one.
 */
export async function writeSafetensors(path: string, tensors: TensorEntries, metadata?: Record<string, string>): Promise<void> {
  assertLittleEndian();
  const byName = new Map<string, Tensor>();
  for (const [name, t] of tensors) {
    if (byName.has(name)) throw new Error(`${path}: duplicate tensor name ${name}`);
    checkTensor(name, t, path);
    byName.set(name, t);
  }
  const entries = [...byName].map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape }));
  const { prefix, layout } = encodeHeader(entries, metadata);

  await writeAtomic(path, async (handle) => {
    await writeAll(handle, prefix);
    for (const info of layout) {
      const bytes = tensorBytes(byName.get(info.name) as Tensor);
      await writeAll(handle, bytes);
    }
  });
}
