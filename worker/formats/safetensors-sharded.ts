// Sharded checkpoints: `<base>.safetensors.index.json` maps each tensor name to the shard
// file that holds it ({"metadata": {"total_size": N}, "weight_map": {name: file}}), as
// transformers' save_pretrained writes them. A TensorStore hides whether a checkpoint is
// one file or many.

import { promises as fsp } from 'node:fs';
import { basename, join } from 'node:path';
import { fileExists, readJsonFile, writeJsonAtomic } from './atomic-file.js';
import { SafetensorsReader, writeSafetensors, type TensorInfo } from './safetensors.js';
import { DTYPE_SIZES, numElements, toF32Tensor, type F32Tensor, type Tensor } from './tensor.js';

export interface StoredTensorInfo extends TensorInfo {
  /** The file holding the tensor. */
  file: string;
}

/** Read access to the tensors of one file or a set of shards, by name. */
export interface TensorStore {
  /** Where the store was opened from (the safetensors file or the index file). */
  readonly source: string;
  readonly names: string[];
  /** Bytes read from disk so far, headers included. */
  readonly bytesRead: number;
  has(name: string): boolean;
  info(name: string): StoredTensorInfo;
  read(name: string): Promise<Tensor>;
  readFloat32(name: string): Promise<F32Tensor>;
  close(): Promise<void>;
}

class SingleFileStore implements TensorStore {
  constructor(private readonly reader: SafetensorsReader) {}
  get source(): string {
    return this.reader.path;
  }
  get names(): string[] {
    return this.reader.names;
  }
  get bytesRead(): number {
    return this.reader.bytesRead;
  }
  has(name: string): boolean {
    return this.reader.has(name);
  }
  info(name: string): StoredTensorInfo {
    return { ...this.reader.info(name), file: this.reader.path };
  }
  read(name: string): Promise<Tensor> {
    return this.reader.read(name);
  }
  readFloat32(name: string): Promise<F32Tensor> {
    return this.reader.readFloat32(name);
  }
  close(): Promise<void> {
    return this.reader.close();
  }
}

class ShardedStore implements TensorStore {
  constructor(
    readonly source: string,
    private readonly weightMap: Map<string, SafetensorsReader>,
    private readonly shards: SafetensorsReader[],
  ) {}
  get names(): string[] {
    return [...this.weightMap.keys()];
  }
  get bytesRead(): number {
    return this.shards.reduce((sum, r) => sum + r.bytesRead, 0);
  }
  has(name: string): boolean {
    return this.weightMap.has(name);
  }
  private shard(name: string): SafetensorsReader {
    const reader = this.weightMap.get(name);
    if (!reader) throw new Error(`${this.source}: no tensor named ${name} in weight_map (${this.weightMap.size} tensors)`);
    return reader;
  }
  info(name: string): StoredTensorInfo {
    const reader = this.shard(name);
    return { ...reader.info(name), file: reader.path };
  }
  read(name: string): Promise<Tensor> {
    return this.shard(name).read(name);
  }
  async readFloat32(name: string): Promise<F32Tensor> {
    return toF32Tensor(await this.read(name), `${this.shard(name).path}: tensor ${name}`);
  }
  async close(): Promise<void> {
    await Promise.all(this.shards.map((r) => r.close()));
  }
}

export async function openSafetensorsFile(path: string): Promise<TensorStore> {
  return new SingleFileStore(await SafetensorsReader.open(path));
}

/** Open a sharded checkpoint from its index; every shard's header is validated up front. */
export async function openShardedIndex(indexPath: string): Promise<TensorStore> {
  const raw = await readJsonFile(indexPath);
  const weightMapRaw = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>).weight_map : undefined;
  if (typeof weightMapRaw !== 'object' || weightMapRaw === null || Array.isArray(weightMapRaw)) {
    throw new Error(`${indexPath}: missing "weight_map" object (tensor name → shard file)`);
  }
  const dir = join(indexPath, '..');
  const files = new Map<string, string>();
  for (const [name, file] of Object.entries(weightMapRaw as Record<string, unknown>)) {
    if (typeof file !== 'string' || file === '' || basename(file) !== file || file === '..') {
      throw new Error(`${indexPath}: weight_map entry for tensor ${name} must be a file name in the same directory, got ${JSON.stringify(file)}`);
    }
    files.set(name, file);
  }
  const readers = new Map<string, SafetensorsReader>();
  try {
    for (const file of new Set(files.values())) readers.set(file, await SafetensorsReader.open(join(dir, file)));
    const weightMap = new Map<string, SafetensorsReader>();
    for (const [name, file] of files) {
      const reader = readers.get(file) as SafetensorsReader;
      if (!reader.has(name)) {
        throw new Error(`${indexPath}: weight_map puts tensor ${name} in ${file}, but ${reader.path} has no such tensor`);
      }
      weightMap.set(name, reader);
    }
    return new ShardedStore(indexPath, weightMap, [...readers.values()]);
  } catch (err) {
    await Promise.all([...readers.values()].map((r) => r.close()));
    throw err;
  }
}

/**
 * Open `<dir>/<base>.safetensors.index.json` if present, else `<dir>/<base>.safetensors`.
 * A path to a file opens that file (an `.index.json` path opens the shards).
 */
export async function openTensorStore(path: string, base = 'model'): Promise<TensorStore> {
  const stat = await fsp.stat(path).catch(() => null);
  if (!stat) throw new Error(`${path}: no such file or directory`);
  if (!stat.isDirectory()) {
    return path.endsWith('.index.json') ? openShardedIndex(path) : openSafetensorsFile(path);
  }
  const index = join(path, `${base}.safetensors.index.json`);
  if (await fileExists(index)) return openShardedIndex(index);
  const single = join(path, `${base}.safetensors`);
  if (await fileExists(single)) return openSafetensorsFile(single);
  const entries = await fsp.readdir(path);
  const hint = entries.includes(`${base}.bin`) || entries.includes('pytorch_model.bin')
    ? ' (found a PyTorch .bin checkpoint: only safetensors is supported; convert it with safetensors.torch.save_file)'
    : '';
  throw new Error(`${path}: neither ${base}.safetensors nor ${base}.safetensors.index.json found${hint}`);
}

export interface ShardOptions {
  /** Largest shard in bytes (data, excluding header); a single bigger tensor gets a shard of its own. */
  maxShardBytes: number;
  /** File name stem: `model` gives model-00001-of-00002.safetensors. */
  base?: string;
  metadata?: Record<string, string>;
}

/** Greedy split in the given order, as transformers' shard_checkpoint does it. */
export function planShards(tensors: ReadonlyArray<readonly [string, Tensor]>, maxShardBytes: number): Array<Array<readonly [string, Tensor]>> {
  if (!(maxShardBytes > 0)) throw new Error(`maxShardBytes must be positive, got ${maxShardBytes}`);
  const shards: Array<Array<readonly [string, Tensor]>> = [];
  let current: Array<readonly [string, Tensor]> = [];
  let size = 0;
  for (const entry of tensors) {
    const bytes = numElements(entry[1].shape) * DTYPE_SIZES[entry[1].dtype];
    if (current.length > 0 && size + bytes > maxShardBytes) {
      shards.push(current);
      current = [];
      size = 0;
    }
    current.push(entry);
    size += bytes;
  }
  if (current.length > 0 || shards.length === 0) shards.push(current);
  return shards;
}

/**
 * Write tensors into `dir` as one `<base>.safetensors` when they fit in one shard, else as
 * numbered shards plus the index. Shards are written first and the index last, so a reader
 * never finds an index that points at missing shards. Returns the files written.
 */
export async function writeShardedSafetensors(
  dir: string,
  tensors: ReadonlyMap<string, Tensor>,
  options: ShardOptions,
): Promise<string[]> {
  const base = options.base ?? 'model';
  const shards = planShards([...tensors], options.maxShardBytes);
  if (shards.length === 1) {
    const file = `${base}.safetensors`;
    await writeSafetensors(join(dir, file), shards[0] ?? [], options.metadata);
    return [file];
  }
  const total = shards.length;
  const weightMap: Record<string, string> = {};
  const written: string[] = [];
  let totalSize = 0;
  for (const [i, shard] of shards.entries()) {
    const file = `${base}-${String(i + 1).padStart(5, '0')}-of-${String(total).padStart(5, '0')}.safetensors`;
    await writeSafetensors(join(dir, file), shard, options.metadata);
    for (const [name, t] of shard) {
      weightMap[name] = file;
      totalSize += t.data.byteLength;
    }
    written.push(file);
  }
  const sorted = Object.fromEntries(Object.entries(weightMap).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const indexFile = `${base}.safetensors.index.json`;
  await writeJsonAtomic(join(dir, indexFile), { metadata: { total_size: totalSize }, weight_map: sorted });
  written.push(indexFile);
  return written;
}
