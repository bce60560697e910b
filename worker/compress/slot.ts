// One module slot (e.g. layer 3 q_proj) across n adapters, packed for the kernels: the
// factors of M_i = s_i·B_i·A_i are normalized so ‖M̃_i‖_F = 1 (the paper's normalization;
// the norms are kept to rescale), padded to a common rank and stacked (see kernels.ts).
import { type JdKernels, type Stack } from './kernels.js';

/** One adapter's LoRA factors for this slot: A is rank×k, B is m×rank (row-major). */
export interface SlotFactors {
  A: Float32Array;
  B: Float32Array;
  rank: number;
  /** s_i: alpha/r (or alpha/√r with rsLoRA). */
  scaling: number;
}

export interface Slot extends Stack {
  name: string;
  /** ‖s_i B_i A_i‖_F, the norm removed by normalization (0 for an all-zero update). */
  norms: Float64Array;
  ranks: number[];
}

/** Packs and normalizes one slot; `what(i)` names adapter i in errors. */
export async function packSlot(kernels: JdKernels, name: string, m: number, k: number, adapters: readonly SlotFactors[], what: (i: number) => string = (i) => `adapter ${i}`): Promise<Slot> {
  const n = adapters.length;
  if (n === 0) throw new Error(`module ${name}: no adapters to compress`);
  const r0 = Math.max(...adapters.map((a) => a.rank));
  const f = new Float32Array(n * r0 * m);
  const g = new Float32Array(n * r0 * k);
  adapters.forEach((ad, i) => {
    if (ad.A.length !== ad.rank * k) throw new Error(`${what(i)}: module ${name}: lora_A has ${ad.A.length} values, expected ${ad.rank}×${k}`);
    if (ad.B.length !== m * ad.rank) throw new Error(`${what(i)}: module ${name}: lora_B has ${ad.B.length} values, expected ${m}×${ad.rank}`);
    transposeInto(ad.B, m, ad.rank, f, i * r0 * m);
    g.set(ad.A, i * r0 * k);
  });
  const slot: Slot = { name, n, r0, m, k, f, g, norms: new Float64Array(n), ranks: adapters.map((ad) => ad.rank) };
  const normsSq = await kernels.normsSq(slot);
  adapters.forEach((ad, i) => {
    const norm = Math.sqrt(Math.max(normsSq[i] as number, 0));
    if (!Number.isFinite(norm)) throw new Error(`${what(i)}: module ${name}: the LoRA update has a non-finite norm (NaN or Inf in lora_A/lora_B)`);
    slot.norms[i] = ad.scaling * norm;
    // Both factors by 1/√‖B A‖ so M̃_i = B̃_iÃ_i has unit norm; an all-zero update stays zero.
    const c = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    scaleRange(f, i * r0 * m, r0 * m, c);
    scaleRange(g, i * r0 * k, r0 * k, c);
  });
  return slot;
}

/**
 * The rank×m transpose of b (m×rank) into out at offset: rows of B̃_iᵀ. A plain function of its
 * arguments, so every array is a local: the same loop over captured variables ran 4× slower.
 */
function transposeInto(b: Float32Array, m: number, rank: number, out: Float32Array, offset: number): void {
  for (let j = 0; j < m; j++) {
    const src = j * rank;
    for (let p = 0; p < rank; p++) out[offset + p * m + j] = b[src + p] as number;
  }
}

function scaleRange(x: Float32Array, start: number, len: number, c: number): void {
  for (let j = start; j < start + len; j++) x[j] = (x[j] as number) * c;
}

/** The slot restricted to `members` (indices into the slot's adapters), in that order. */
export function subsetSlot(slot: Slot, members: readonly number[]): Slot {
  const { r0, m, k } = slot;
  const n = members.length;
  return { name: slot.name, n, r0, m, k, f: pickBlocks(slot.f, members, r0 * m), g: pickBlocks(slot.g, members, r0 * k), norms: Float64Array.from(members, (i) => slot.norms[i] as number), ranks: members.map((i) => slot.ranks[i] as number) };
}

/** The members' blocks of `size` values each, in that order. */
function pickBlocks(x: Float32Array, members: readonly number[], size: number): Float32Array {
  const out = new Float32Array(members.length * size);
  members.forEach((src, dst) => out.set(x.subarray(src * size, (src + 1) * size), dst * size));
  return out;
}

/** Number of adapters with a non-zero update: Σ‖M̃_i‖² over the slot. */
export function totalEnergy(slot: Slot): number {
  let s = 0;
  for (const x of slot.norms) if (x > 0) s += 1;
  return s;
}

/**
 * Squared errors ‖M̃_i − U S_i Vᵀ‖² as ‖M̃_i‖² − captured_i (Pythagoras, for the optimal S_i and
 * orthonormal or least-squares bases), or undefined when some adapter's error² is below
 * PYTHAGORAS_MIN: the captured energy carries float32 rounding of about 1e-6, which is at most
 * 1e-5 of an error² ≥ 0.1 but swamps small ones, where explicit residuals (kernels.errors) are needed.
 */
export function errorsFromCaptured(slot: Slot, captured: ArrayLike<number>): Float64Array | undefined {
  const out = new Float64Array(slot.n);
  for (let i = 0; i < slot.n; i++) {
    if (!((slot.norms[i] as number) > 0)) continue;
    const e = 1 - (captured[i] as number);
    if (!(e >= PYTHAGORAS_MIN)) return undefined;
    out[i] = e;
  }
  return out;
}

export const PYTHAGORAS_MIN = 0.1;
