// Our own tensor type: what graphs take as constants and what sessions take and return.
// Nothing outside session.ts sees onnxruntime's Tensor.
import { allocate, type DType, dtypeOfArray, type TensorData, type TypedArrayFor } from './dtype.js';
import { checkDims, formatShape } from './shape.js';

export interface Tensor<D extends DType = DType> {
  readonly dtype: D;
  readonly dims: readonly number[];
  readonly data: TypedArrayFor[D];
}

export function elementCount(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** Builds a tensor from plain numbers (or a ready typed array), checking the element count. */
export function tensor<D extends DType>(dtype: D, dims: readonly number[], values: ArrayLike<number> | TypedArrayFor[D]): Tensor<D> {
  checkDims(dims, `tensor ${dtype}${formatShape(dims)}`);
  const n = elementCount(dims);
  if (values.length !== n) throw new Error(`tensor ${dtype}${formatShape(dims)} needs ${n} values, got ${values.length}`);
  // A typed array of the right kind is adopted without a copy; anything else is converted.
  const isTyped = ArrayBuffer.isView(values) && dtypeOfArray(values as TensorData) === dtype;
  const data = (isTyped ? values : allocate(dtype, n, values as ArrayLike<number>)) as TypedArrayFor[D];
  return { dtype, dims: [...dims], data };
}

export function zeros<D extends DType>(dtype: D, dims: readonly number[]): Tensor<D> {
  return { dtype, dims: [...dims], data: allocate(dtype, elementCount(dims)) as TypedArrayFor[D] };
}

/** Little-endian bytes of a tensor's data, as TensorProto.raw_data wants them. */
export function rawBytes(t: Tensor): Uint8Array {
  const d = t.data;
  return new Uint8Array(d.buffer.slice(d.byteOffset, d.byteOffset + d.byteLength));
}
