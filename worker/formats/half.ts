// IEEE binary16 (F16) and bfloat16 (BF16) <-> float32, bit-exact.
//
// Node 20 has no Float16Array, so half-precision tensors live as raw bits in Uint16Array.
// Narrowing rounds to nearest, ties to even (what numpy's astype(float16) and PyTorch's
// .to(bfloat16) do), so a checkpoint written here matches one written by the reference
// tools bit for bit. NaN stays NaN (quiet), overflow becomes ±inf, tiny values become
// subnormals or signed zero.

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

function f32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0] as number;
}

function bitsF32(bits: number): number {
  scratchU32[0] = bits >>> 0;
  return scratchF32[0] as number;
}

/** float32 value -> binary16 bits, round-to-nearest-even (numpy's npy_floatbits_to_halfbits). */
export function f32ToF16Bits(x: number): number {
  const f = f32Bits(x);
  const sign = (f >>> 16) & 0x8000;
  const exp = f & 0x7f800000;
  if (exp >= 0x47800000) {
    // Exponent too large for half: inf, NaN or overflow.
    if (exp === 0x7f800000) {
      const sig = f & 0x007fffff;
      if (sig !== 0) {
        // Keep the top payload bits, force the quiet bit so the result is never inf.
        return sign | 0x7c00 | 0x0200 | (sig >>> 13);
      }
      return sign | 0x7c00;
    }
    return sign | 0x7c00;
  }
  if (exp <= 0x38000000) {
    // Result is subnormal or zero in half precision.
    if (exp < 0x33000000) return sign; // below half the smallest subnormal: signed zero
    const e = exp >>> 23;
    let sig = 0x00800000 + (f & 0x007fffff);
    const shift = 113 - e;
    // The shift drops up to 11 low bits; they count as "sticky" when deciding a tie.
    const dropped = (f & ((1 << (shift)) - 1)) !== 0;
    sig >>>= shift;
    if ((sig & 0x3fff) !== 0x1000 || dropped) sig += 0x1000;
    return sign | (sig >>> 13);
  }
  const hExp = (exp - 0x38000000) >>> 13;
  let sig = f & 0x007fffff;
  if ((sig & 0x3fff) !== 0x1000) sig += 0x1000;
  // A carry out of the significand bumps the exponent, which is the right answer (up to inf).
  return (sign | (hExp + (sig >>> 13))) & 0xffff;
}

let f16Table: Float32Array | undefined;

/** Decoding is a 64 Ki-entry table: exact, and much faster than bit fiddling per element. */
function f16DecodeTable(): Float32Array {
  if (f16Table) return f16Table;
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) table[h] = f16BitsToF32Slow(h);
  f16Table = table;
  return table;
}

function f16BitsToF32Slow(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const sig = h & 0x3ff;
  if (exp === 0x1f) return bitsF32(sign | 0x7f800000 | (sig << 13));
  if (exp === 0) {
    // Subnormal (or zero): value = sig × 2^-24, exact in float32.
    const v = sig * 2 ** -24;
    return sign ? -v : v;
  }
  return bitsF32(sign | ((exp + 112) << 23) | (sig << 13));
}

/** binary16 bits -> float32 value (exact). */
export function f16BitsToF32(h: number): number {
  return f16DecodeTable()[h & 0xffff] as number;
}

/** float32 value -> bfloat16 bits, round-to-nearest-even. */
export function f32ToBf16Bits(x: number): number {
  const f = f32Bits(x);
  if ((f & 0x7fffffff) > 0x7f800000) {
    // NaN: truncate but set the quiet bit so payload truncation cannot produce inf.
    return ((f >>> 16) | 0x0040) & 0xffff;
  }
  return ((f + 0x7fff + ((f >>> 16) & 1)) >>> 16) & 0xffff;
}

/** bfloat16 bits -> float32 value (exact: bf16 is the top half of a float32). */
export function bf16BitsToF32(b: number): number {
  return bitsF32((b & 0xffff) << 16);
}

export function f32ArrayToF16(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16Bits(src[i] as number);
  return out;
}

export function f16ArrayToF32(src: Uint16Array): Float32Array {
  const table = f16DecodeTable();
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = table[src[i] as number] as number;
  return out;
}

export function f32ArrayToBf16(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < bits.length; i++) {
    const f = bits[i] as number;
    out[i] = (f & 0x7fffffff) > 0x7f800000 ? (f >>> 16) | 0x0040 : (f + 0x7fff + ((f >>> 16) & 1)) >>> 16;
  }
  return out;
}

export function bf16ArrayToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) bits[i] = (src[i] as number) << 16;
  return out;
}
