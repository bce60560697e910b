// Element types the builder knows, with their ONNX TensorProto.DataType codes and the
// typed arrays that hold them (the same arrays onnxruntime-node accepts).

export type FloatDType = 'float32' | 'float16' | 'float64';
export type DType = FloatDType | 'int64' | 'int32' | 'bool';

export const DTYPES: readonly DType[] = ['float32', 'float16', 'float64', 'int64', 'int32', 'bool'];

/** onnx.proto TensorProto.DataType values. */
export const ONNX_DTYPE_CODE: Readonly<Record<DType, number>> = {
  float32: 1,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  float64: 11,
};

export interface TypedArrayFor {
  float32: Float32Array;
  float16: Uint16Array; // raw IEEE half bits: Node 20 has no Float16Array
  float64: Float64Array;
  int64: BigInt64Array;
  int32: Int32Array;
  bool: Uint8Array;
}

export type TensorData = TypedArrayFor[DType];

export const BYTES_PER_ELEMENT: Readonly<Record<DType, number>> = {
  float32: 4,
  float16: 2,
  float64: 8,
  int64: 8,
  int32: 4,
  bool: 1,
};

export function isFloat(dtype: DType): dtype is FloatDType {
  return dtype === 'float32' || dtype === 'float16' || dtype === 'float64';
}

export function checkDType(dtype: string): DType {
  if ((DTYPES as readonly string[]).includes(dtype)) return dtype as DType;
  throw new Error(`invalid dtype ${dtype}: expected one of ${DTYPES.join(', ')}`);
}

/** The dtype a typed array represents; float16 must be named because it shares Uint16Array. */
export function dtypeOfArray(data: TensorData): DType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof Uint16Array) return 'float16';
  if (data instanceof Uint8Array) return 'bool';
  throw new Error(`unsupported array ${(data as object).constructor.name}: expected Float32Array, Uint16Array (float16), Float64Array, BigInt64Array, Int32Array or Uint8Array (bool)`);
}

/** Allocate a typed array of `n` elements for `dtype`, filled from plain numbers when given. */
export function allocate(dtype: DType, n: number, values?: ArrayLike<number>): TensorData {
  switch (dtype) {
    case 'float32':
      return values ? Float32Array.from(values) : new Float32Array(n);
    case 'float64':
      return values ? Float64Array.from(values) : new Float64Array(n);
    case 'int32':
      return values ? Int32Array.from(values) : new Int32Array(n);
    case 'int64':
      return values ? BigInt64Array.from(Array.from(values, (v) => BigInt(Math.trunc(v)))) : new BigInt64Array(n);
    case 'bool':
      return values ? Uint8Array.from(values, (v) => (v ? 1 : 0)) : new Uint8Array(n);
    case 'float16':
      return values ? Uint16Array.from(values, toHalfBits) : new Uint16Array(n);
  }
}

/** Read element i of any tensor array as a JS number (float16 decoded, int64 narrowed). */
export function elementAsNumber(data: TensorData, dtype: DType, i: number): number {
  const v = data[i];
  if (v === undefined) throw new RangeError(`element ${i} out of range for ${data.length} elements`);
  if (typeof v === 'bigint') return Number(v);
  return dtype === 'float16' ? fromHalfBits(v) : v;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float → IEEE half bits, round-to-nearest-even. */
export function toHalfBits(x: number): number {
  f32[0] = x;
  const bits = u32[0] ?? 0;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (half + (rem > mid || (rem === mid && (half & 1)) ? 1 : 0));
  }
  const half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  return sign | (half + (rem > 0x1000 || (rem === 0x1000 && (half & 1)) ? 1 : 0));
}

export function fromHalfBits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}
