// The in-memory tensor that the formats layer reads and writes: a safetensors dtype name,
// a shape, and a typed array over exactly the tensor's bytes (little-endian host order).
// F16 and BF16 are raw bits in a Uint16Array; use toFloat32 / fromFloat32 to compute.

import { bf16ArrayToF32, f16ArrayToF32, f32ArrayToBf16, f32ArrayToF16 } from './half.js';

/** Every dtype of the safetensors spec, with its element size in bytes. */
export const DTYPE_SIZES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
} as const;

export type SafetensorsDType = keyof typeof DTYPE_SIZES;
export const SAFETENSORS_DTYPES = Object.keys(DTYPE_SIZES) as SafetensorsDType[];

/** The dtypes we hand out as typed arrays; the others can only be read as raw bytes. */
export interface TypedArrayFor {
  F64: Float64Array;
  F32: Float32Array;
  F16: Uint16Array;
  BF16: Uint16Array;
  I64: BigInt64Array;
  I32: Int32Array;
  I16: Int16Array;
  I8: Int8Array;
  U8: Uint8Array;
  BOOL: Uint8Array;
}
export type TensorDType = keyof TypedArrayFor;
export const TENSOR_DTYPES: readonly TensorDType[] = ['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL'];
export const FLOAT_DTYPES = ['F32', 'F16', 'BF16'] as const;
export type FloatDType = (typeof FLOAT_DTYPES)[number];

export interface Tensor<D extends TensorDType = TensorDType> {
  dtype: D;
  shape: number[];
  data: TypedArrayFor[D];
}

export type F32Tensor = Tensor<'F32'>;

export function isSafetensorsDType(x: string): x is SafetensorsDType {
  return Object.hasOwn(DTYPE_SIZES, x);
}

export function isTensorDType(x: string): x is TensorDType {
  return (TENSOR_DTYPES as readonly string[]).includes(x);
}

export function isFloatDType(x: string): x is FloatDType {
  return (FLOAT_DTYPES as readonly string[]).includes(x);
}

export function numElements(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeToString(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** View `bytes` as the typed array of `dtype`; bytes.byteOffset must be element-aligned. */
export function typedView<D extends TensorDType>(dtype: D, bytes: Uint8Array): TypedArrayFor[D] {
  const { buffer, byteOffset, byteLength } = bytes;
  const n = byteLength / DTYPE_SIZES[dtype];
  const views: { [K in TensorDType]: () => TypedArrayFor[K] } = {
    F64: () => new Float64Array(buffer, byteOffset, n),
    F32: () => new Float32Array(buffer, byteOffset, n),
    F16: () => new Uint16Array(buffer, byteOffset, n),
    BF16: () => new Uint16Array(buffer, byteOffset, n),
    I64: () => new BigInt64Array(buffer, byteOffset, n),
    I32: () => new Int32Array(buffer, byteOffset, n),
    I16: () => new Int16Array(buffer, byteOffset, n),
    I8: () => new Int8Array(buffer, byteOffset, n),
    U8: () => new Uint8Array(buffer, byteOffset, n),
    BOOL: () => new Uint8Array(buffer, byteOffset, n),
  };
  return views[dtype]() as TypedArrayFor[D];
}

export function tensorBytes(t: Tensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** Build a tensor, checking that the data length matches the shape. */
export function makeTensor<D extends TensorDType>(dtype: D, shape: number[], data: TypedArrayFor[D]): Tensor<D> {
  const n = numElements(shape);
  if (data.length !== n) {
    throw new Error(`tensor data has ${data.length} elements but shape ${shapeToString(shape)} needs ${n}`);
  }
  return { dtype, shape: [...shape], data };
}

/** Decode any float tensor to float32 (F32 data is returned as is, not copied). */
export function toFloat32(t: Tensor, what = 'tensor'): Float32Array {
  switch (t.dtype) {
    case 'F32':
      return t.data as Float32Array;
    case 'F16':
      return f16ArrayToF32(t.data as Uint16Array);
    case 'BF16':
      return bf16ArrayToF32(t.data as Uint16Array);
    case 'F64':
      return Float32Array.from(t.data as Float64Array);
    default:
      throw new Error(`${what} has dtype ${t.dtype}: expected one of F32, F16, BF16, F64`);
  }
}

export function toF32Tensor(t: Tensor, what?: string): F32Tensor {
  return { dtype: 'F32', shape: [...t.shape], data: toFloat32(t, what) };
}

/** Encode float32 values as a tensor of the given float dtype (rounding to nearest even). */
export function fromFloat32(data: Float32Array, shape: number[], dtype: FloatDType): Tensor {
  switch (dtype) {
    case 'F32':
      return makeTensor('F32', shape, data);
    case 'F16':
      return makeTensor('F16', shape, f32ArrayToF16(data));
    case 'BF16':
      return makeTensor('BF16', shape, f32ArrayToBf16(data));
  }
}
