// One entry for the three methods on one module slot.
import { jdDiag } from './jd-diag.js';
import { jdFull } from './jd-full.js';
import { type JdKernels } from './kernels.js';
import { type Slot } from './slot.js';
import { perAdapterSvd } from './svd.js';
import { type JdMethod, type JdOptions, JD_METHODS, type SlotResult } from './types.js';

export function compressSlot(kernels: JdKernels, slot: Slot, method: JdMethod, opts: JdOptions): Promise<SlotResult> {
  switch (method) {
    case 'jd-full':
      return jdFull(kernels, slot, opts);
    case 'jd-diag':
      return jdDiag(kernels, slot, opts);
    case 'svd':
      return perAdapterSvd(kernels, slot, opts.rank);
    default:
      throw new Error(`compression method ${JSON.stringify(method)} is not supported: expected one of ${JD_METHODS.join(', ')}`);
  }
}
