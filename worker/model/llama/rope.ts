// Rotary position embeddings in the Hugging Face layout ("rotate_half": the two halves of
// each head are the real and imaginary parts). cos/sin tables for every position are
// precomputed here and baked into the graph; the graph gathers rows by position_ids, so one
// session serves any sequence length and per-sequence offsets (left padding, decoding).
import * as nn from '../../onnx/index.js';
import { type LlamaConfig } from './config.js';

/** θ^(-2i/d) for i < d/2, adjusted by rope_scaling (linear or llama3) as transformers does. */
export function ropeInverseFrequencies(c: LlamaConfig): Float64Array {
  const half = c.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(c.ropeTheta, (2 * i) / c.headDim);
  const s = c.ropeScaling;
  if (!s) return inv;
  if (s.type === 'linear') return inv.map((f) => f / s.factor);
  // llama3: long wavelengths are slowed by `factor`, short ones kept, the band between blended.
  const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / s.factor;
    const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}

/** cos and sin tables [positions, headDim], each half repeated as in HF's cat((freqs, freqs)). */
export function ropeTables(c: LlamaConfig, positions: number): { cos: Float32Array; sin: Float32Array } {
  const inv = ropeInverseFrequencies(c);
  const d = c.headDim;
  const half = d / 2;
  const cos = new Float32Array(positions * d);
  const sin = new Float32Array(positions * d);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p * (inv[i] as number);
      cos[p * d + i] = cos[p * d + i + half] = Math.cos(angle);
      sin[p * d + i] = sin[p * d + i + half] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

export interface RopeAngles {
  /** [B, T, 1, headDim]: broadcasts over the heads axis of [B, T, heads, headDim]. */
  cos: nn.Value;
  sin: nn.Value;
}

/** Gathers the table rows for `positionIds` [B, T] (int64, each < `positions`). */
export function ropeAngles(g: nn.Graph, c: LlamaConfig, positionIds: nn.Value, positions: number): RopeAngles {
  const t = ropeTables(c, positions);
  const cosTable = g.initializer('rope.cos', nn.tensor('float32', [positions, c.headDim], t.cos));
  const sinTable = g.initializer('rope.sin', nn.tensor('float32', [positions, c.headDim], t.sin));
  return {
    cos: nn.unsqueeze(nn.gather(cosTable, positionIds, 0), [2]),
    sin: nn.unsqueeze(nn.gather(sinTable, positionIds, 0), [2]),
  };
}

/** x·cos + rotate_half(x)·sin for x [B, T, heads, headDim]. */
export function applyRope(x: nn.Value, angles: RopeAngles, headDim: number): nn.Value {
  const half = headDim / 2;
  const x1 = nn.slice(x, [0], [half], [-1]);
  const x2 = nn.slice(x, [half], [headDim], [-1]);
  const rotated = nn.concat([nn.neg(x2), x1], -1);
  return nn.add(nn.mul(x, angles.cos), nn.mul(rotated, angles.sin));
}
