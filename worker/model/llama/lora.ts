// A linear layer y = x·Wᵀ + b with the optional pieces sparse fine-tuning needs:
//   masked base weight       W ⊙ M_w                          (fixed sparsity pattern)
//   LoRA branch              s · (x·Aᵀ)·Bᵀ                      (two thin matmuls)
//   masked LoRA delta        x·(s · (B·A) ⊙ M_l)ᵀ               (SparsePEFT/LoSA: the delta
//                            keeps the base's sparsity so it merges without densifying)
//   fake-quantized weight   deq(quant(W + Δ)) forward, gradient as if W + Δ (QA-SparsePEFT)
//   per-row adapters         multi-lora.ts (serving: every row its own adapter)
// A masked delta must be formed densely (out × in) because the mask acts elementwise on it.
import * as nn from '../../onnx/index.js';
import { multiLoraDeltas } from './multi-lora.js';
import { type LlamaParams, type LoraQuantValues } from './params.js';

export function linear(p: LlamaParams, path: string, x: nn.Value): nn.Value {
  p.noteLinearInput(path, x);
  let w = p.linearWeight(path);
  const lora = p.loraBranch(path);
  const dense = lora !== undefined && (lora.mask !== undefined || lora.quant !== undefined);
  if (lora && dense) {
    const delta = (A: nn.Value, B: nn.Value): nn.Value => nn.mul(lora.mask ? nn.mul(nn.matmul(B, A), lora.mask) : nn.matmul(B, A), lora.scaling);
    const d = delta(lora.A, lora.B);
    w = lora.quant ? fakeQuantized(w, d, delta(lora.quant.A, lora.quant.B), lora.quant) : nn.add(w, d);
  }
  let y = nn.matmul(x, nn.transpose(w, [1, 0]));
  if (lora && !dense) {
    const down = nn.matmul(x, nn.transpose(lora.A, [1, 0]));
    y = nn.add(y, nn.mul(nn.matmul(down, nn.transpose(lora.B, [1, 0])), lora.scaling));
  }
  for (const delta of multiLoraDeltas(p, path, x)) y = nn.add(y, delta);
  if (p.hasBias(path)) y = nn.add(y, p.weight(`${path}.bias`));
  return y;
}

/**
 * W_q = W̃ + stopgrad(deq(quant(W̃)) − W̃) with W̃ = W + Δ, written as deq(quant(W + Δ_held)) + (Δ − Δ_held):
 * Δ_held is the same delta computed from copies of A and B fed with the same values, so the two
 * are bitwise equal, the forward is exactly deq(quant(W̃)), and the gradient reaches A and B only
 * through Δ with the derivative 1 of the straight-through estimator. The autodiff has no
 * stop-gradient op (and Round has no rule): a branch built on inputs no gradient is asked for is one,
 * and it costs a second r×in by out×r product per module, in the session, instead of forming W̃
 * on the host every step. quant(w) = clamp(round(w/s + z), 0, maxq), deq(q) = s·(q − z), with s and
 * z [out, groups] spread over the columns by each column's group.
 */
function fakeQuantized(w: nn.Value, delta: nn.Value, held: nn.Value, q: LoraQuantValues): nn.Value {
  const s = nn.gather(q.scales, q.groups, 1);
  const z = nn.gather(q.zeros, q.groups, 1);
  const u = nn.round(nn.add(nn.div(nn.add(w, held), s), z));
  const code = nn.where(nn.greater(u, q.maxq), q.maxq, nn.where(nn.less(u, 0), 0, u));
  return nn.add(nn.mul(s, nn.sub(code, z)), nn.sub(delta, held));
}
