// The safetensors header: parse + validate (reader side) and encode (writer side).
//
// Layout (https://github.com/huggingface/safetensors): 8-byte little-endian header length N,
// N bytes of UTF-8 JSON `{"__metadata__": {str: str}, name: {dtype, shape, data_offsets}}`
// (padded with spaces), then the data section. Offsets are relative to the data section.
// Validation follows the reference implementation: tensors must tile the data section
// exactly (contiguous, no gaps, no overlap, ending at end of file).

import {
  DTYPE_SIZES,
  SAFETENSORS_DTYPES,
  isSafetensorsDType,
  numElements,
  shapeToString,
  type SafetensorsDType,
} from './tensor.js';

/** The reference refuses headers above 100 MB; so do we (a corrupt length would OOM us). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Byte range within the data section, [begin, end). */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Bytes before the data section: 8 + header length. */
  dataStart: number;
  metadata: Record<string, string>;
  /** Tensors in data-offset order. */
  tensors: TensorInfo[];
}

export class SafetensorsFormatError extends Error {
  constructor(file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'SafetensorsFormatError';
  }
}

/** Read the 8-byte prefix; `fileSize` bounds it so a corrupt length fails before allocating. */
export function parseHeaderLength(prefix: Uint8Array, fileSize: number, file: string): number {
  if (prefix.byteLength < 8 || fileSize < 8) {
    throw new SafetensorsFormatError(file, `file is ${fileSize} bytes, too short for the 8-byte header length`);
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsFormatError(file, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit (corrupt or not a safetensors file)`);
  }
  const len = Number(n);
  if (8 + len > fileSize) {
    throw new SafetensorsFormatError(file, `header length ${len} runs past the end of the ${fileSize}-byte file (truncated?)`);
  }
  return len;
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function isNonNegativeInt(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

/** Parse and validate the JSON header bytes against the size of the file. */
export function parseHeader(json: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  const dataStart = 8 + json.byteLength;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(json);
  } catch {
    throw new SafetensorsFormatError(file, 'header is not valid UTF-8');
  }
  if (!text.startsWith('{')) {
    throw new SafetensorsFormatError(file, `header must start with '{', got ${JSON.stringify(text.slice(0, 16))}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new SafetensorsFormatError(file, `header is not valid JSON (${(err as Error).message})`);
  }
  if (!isRecord(raw)) throw new SafetensorsFormatError(file, 'header must be a JSON object');

  const metadata: Record<string, string> = {};
  const tensors: TensorInfo[] = [];
  for (const [name, value] of Object.entries(raw)) {
    if (name === '__metadata__') {
      if (!isRecord(value)) throw new SafetensorsFormatError(file, '__metadata__ must be an object of strings');
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== 'string') {
          throw new SafetensorsFormatError(file, `__metadata__.${k} must be a string, got ${JSON.stringify(v)}`);
        }
        metadata[k] = v;
      }
      continue;
    }
    tensors.push(parseTensorEntry(name, value, file));
  }

  // Tiling check, as the reference does it: sorted by offsets, each tensor starts where the
  // previous ended, and the last ends exactly at the end of the file.
  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const t of tensors) {
    if (t.begin !== cursor) {
      const what = t.begin < cursor ? 'overlaps the previous tensor' : 'leaves a gap after the previous tensor';
      throw new SafetensorsFormatError(file, `tensor ${t.name}: data_offsets [${t.begin}, ${t.end}] ${what} (expected to start at ${cursor})`);
    }
    cursor = t.end;
  }
  const dataBytes = fileSize - dataStart;
  if (cursor !== dataBytes) {
    const last = tensors.at(-1);
    const where = last ? `tensor ${last.name} ends at data offset ${cursor}` : 'there are no tensors';
    throw new SafetensorsFormatError(
      file,
      cursor > dataBytes
        ? `${where} but the data section has only ${dataBytes} bytes (truncated file?)`
        : `${where} but the data section has ${dataBytes} bytes (trailing bytes)`,
    );
  }
  return { dataStart, metadata, tensors };
}

function parseTensorEntry(name: string, value: unknown, file: string): TensorInfo {
  const fail = (msg: string): never => {
    throw new SafetensorsFormatError(file, `tensor ${name}: ${msg}`);
  };
  if (!isRecord(value)) return fail('entry must be an object {dtype, shape, data_offsets}');
  const { dtype, shape, data_offsets: offsets } = value;
  if (typeof dtype !== 'string' || !isSafetensorsDType(dtype)) {
    return fail(`unknown dtype ${JSON.stringify(dtype)}: expected one of ${SAFETENSORS_DTYPES.join(', ')}`);
  }
  if (!Array.isArray(shape) || !shape.every(isNonNegativeInt)) {
    return fail(`shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInt)) {
    return fail(`data_offsets must be [begin, end] non-negative integers, got ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) return fail(`data_offsets [${begin}, ${end}] end before they begin`);
  const dims = shape as number[];
  const expected = numElements(dims) * DTYPE_SIZES[dtype];
  if (!Number.isSafeInteger(expected)) return fail(`shape ${shapeToString(dims)} is too large`);
  if (end - begin !== expected) {
    return fail(
      `shape ${shapeToString(dims)} × ${dtype} (${DTYPE_SIZES[dtype]} bytes) needs ${expected} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`,
    );
  }
  return { name, dtype, shape: dims, begin, end };
}

/** Writer order of the reference: larger dtypes first (keeps every tensor aligned), then name. */
const WRITE_RANK: Record<SafetensorsDType, number> = {
  U64: 19, I64: 18, F64: 17, F32: 15, U32: 14, I32: 13, BF16: 12, F16: 11, U16: 10, I16: 9,
  F8_E4M3: 7, F8_E5M2: 6, I8: 5, U8: 4, BOOL: 0,
};

export interface HeaderEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
}

/**
 * Lay out tensors the way the reference writer does and encode the header, padded with
 * spaces to a multiple of 8 so the data section (and every tensor in it) stays aligned.
 * Returns the full prefix (8-byte length + header) and the entries in data order.
 */
export function encodeHeader(
  entries: readonly HeaderEntry[],
  metadata?: Record<string, string>,
): { prefix: Uint8Array; layout: TensorInfo[] } {
  const ordered = [...entries].sort(
    (a, b) => WRITE_RANK[b.dtype] - WRITE_RANK[a.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  const layout: TensorInfo[] = [];
  let offset = 0;
  for (const e of ordered) {
    if (e.name === '__metadata__') throw new Error('a tensor cannot be named __metadata__ (reserved by safetensors)');
    if (Object.hasOwn(header, e.name)) throw new Error(`duplicate tensor name ${e.name}`);
    const size = numElements(e.shape) * DTYPE_SIZES[e.dtype];
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + size] };
    layout.push({ name: e.name, dtype: e.dtype, shape: [...e.shape], begin: offset, end: offset + size });
    offset += size;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const prefix = new Uint8Array(8 + padded).fill(0x20);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(padded), true);
  prefix.set(json, 8);
  return { prefix, layout };
}
