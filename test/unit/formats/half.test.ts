import assert from 'node:assert/strict';
import {
  bf16ArrayToF32,
  bf16BitsToF32,
  f16ArrayToF32,
  f16BitsToF32,
  f32ArrayToBf16,
  f32ArrayToF16,
  f32ToBf16Bits,
  f32ToF16Bits,
} from '../../../worker/formats/half.js';

const hex = (n: number): string => `0x${n.toString(16).padStart(4, '0')}`;

function f32FromBits(bits: number): number {
  return new Float32Array(new Uint32Array([bits >>> 0]).buffer)[0] as number;
}

describe('half precision conversion', () => {
  describe('float32 to F16', () => {
    const cases: Array<[string, number, number]> = [
      ['+0', 0, 0x0000],
      ['-0', -0, 0x8000],
      ['+inf', Infinity, 0x7c00],
      ['-inf', -Infinity, 0xfc00],
      ['NaN (quiet)', NaN, 0x7e00],
      ['one', 1, 0x3c00],
      ['max finite 65504', 65504, 0x7bff],
      ['65519.99 rounds down to max', 65519.99, 0x7bff],
      ['65520 (halfway to 2^16) overflows to inf', 65520, 0x7c00],
      ['float32 max overflows to inf', 3.4028234663852886e38, 0x7c00],
      ['smallest normal 2^-14', 2 ** -14, 0x0400],
      ['largest subnormal', 2 ** -14 - 2 ** -24, 0x03ff],
      ['smallest subnormal 2^-24', 2 ** -24, 0x0001],
      ['exactly half the smallest subnormal rounds to even (zero)', 2 ** -25, 0x0000],
      ['just above half the smallest subnormal rounds up', f32FromBits(0x33000001), 0x0001],
      ['1.5 × 2^-24 is a tie and rounds to even (2 × 2^-24)', 1.5 * 2 ** -24, 0x0002],
      ['2.5 × 2^-24 is a tie and rounds to even (2 × 2^-24)', 2.5 * 2 ** -24, 0x0002],
      ['1 + 2^-11 is a tie and rounds down to even 1', 1 + 2 ** -11, 0x3c00],
      ['1 + 3 × 2^-11 is a tie and rounds up to even', 1 + 3 * 2 ** -11, 0x3c02],
      ['just above the tie rounds up', f32FromBits(0x3f801001), 0x3c01],
      ['-2', -2, 0xc000],
    ];
    for (const [name, x, bits] of cases) {
      it(`encodes ${name} as ${hex(bits)}`, () => {
        assert.equal(hex(f32ToF16Bits(x)), hex(bits));
      });
    }
  });

  describe('float32 to BF16', () => {
    const cases: Array<[string, number, number]> = [
      ['+0', 0, 0x0000],
      ['-0', -0, 0x8000],
      ['+inf', Infinity, 0x7f80],
      ['-inf', -Infinity, 0xff80],
      ['NaN (quiet)', NaN, 0x7fc0],
      ['a signalling NaN whose payload is in the low bits stays NaN', f32FromBits(0x7f800001), 0x7fc0],
      ['one', 1, 0x3f80],
      ['float32 max rounds up to inf', 3.4028234663852886e38, 0x7f80],
      ['largest bf16 below inf', f32FromBits(0x7f7f0000), 0x7f7f],
      ['1 + 2^-8 is a tie and rounds down to even 1', 1 + 2 ** -8, 0x3f80],
      ['1 + 3 × 2^-8 is a tie and rounds up to even', 1 + 3 * 2 ** -8, 0x3f82],
      ['float32 subnormal keeps its top bits', f32FromBits(0x00010000), 0x0001],
      ['smallest float32 subnormal rounds to zero', f32FromBits(0x00000001), 0x0000],
    ];
    for (const [name, x, bits] of cases) {
      it(`encodes ${name} as ${hex(bits)}`, () => {
        assert.equal(hex(f32ToBf16Bits(x)), hex(bits));
        assert.equal(hex(f32ArrayToBf16(new Float32Array([x]))[0] as number), hex(bits));
      });
    }
  });

  it('decodes every F16 bit pattern and encodes it back to the same bits (NaNs stay NaN)', () => {
    for (let h = 0; h < 65536; h++) {
      const x = f16BitsToF32(h);
      const isNaN16 = (h & 0x7c00) === 0x7c00 && (h & 0x03ff) !== 0;
      if (isNaN16) {
        assert.ok(Number.isNaN(x), `${hex(h)} should decode to NaN`);
        assert.ok(Number.isNaN(f16BitsToF32(f32ToF16Bits(x))));
      } else {
        assert.equal(f32ToF16Bits(x), h, `${hex(h)} -> ${x}`);
      }
    }
  });

  it('rounds every F16 midpoint to the even neighbour and its float32 neighbours to the nearest', () => {
    const probe = new Float32Array(3);
    for (let h = 0; h < 0x7bff; h++) {
      const lo = f16BitsToF32(h);
      const hi = f16BitsToF32(h + 1);
      probe[0] = (lo + hi) / 2; // exact: the midpoint needs 12 significant bits
      const even = h % 2 === 0 ? h : h + 1;
      assert.equal(f32ToF16Bits(probe[0] as number), even, `midpoint of ${hex(h)}`);
      const bits = new Uint32Array(probe.buffer);
      bits[1] = (bits[0] as number) - 1;
      bits[2] = (bits[0] as number) + 1;
      if (h > 0) assert.equal(f32ToF16Bits(probe[1] as number), h, `below midpoint of ${hex(h)}`);
      assert.equal(f32ToF16Bits(probe[2] as number), h + 1, `above midpoint of ${hex(h)}`);
    }
  });

  it('decodes every BF16 bit pattern exactly and encodes it back to the same bits', () => {
    for (let b = 0; b < 65536; b++) {
      const x = bf16BitsToF32(b);
      if ((b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0) {
        assert.ok(Number.isNaN(x));
        continue;
      }
      assert.equal(f32ToBf16Bits(x), b, hex(b));
    }
  });

  it('converts whole arrays the same way as single values', () => {
    const xs = new Float32Array([0, -0, 1.5, -3.25e-6, 70000, NaN, 1e-8, 0.1]);
    const h = f32ArrayToF16(xs);
    const b = f32ArrayToBf16(xs);
    xs.forEach((x, i) => {
      assert.equal(h[i], f32ToF16Bits(x));
      assert.equal(b[i], f32ToBf16Bits(x));
    });
    assert.deepEqual(Array.from(f16ArrayToF32(h)), Array.from(h, f16BitsToF32));
    assert.deepEqual(Array.from(bf16ArrayToF32(b)), Array.from(b, bf16BitsToF32));
  });
});
