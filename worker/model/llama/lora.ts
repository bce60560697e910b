// A linear layer y = x·Wᵀ + b with the optional pieces sparse fine-tuning needs:
//   masked base weight       W ⊙ M_w                          (fixed sparsity pattern)
//   LoRA branch              s · (x·Aᵀ)·Bᵀ                      (two thin matmuls)
//   masked LoRA delta        x·(s · (B·A) ⊙ M_l)ᵀ               (SparsePEFT/LoSA: the delta
//                            keeps the base's sparsity so it merges without densifying)
//   per-row adapters         multi-lora.ts (serving: every row its own adapter)
// A masked delta must be formed densely (out × in) because the mask acts elementwise on it.
import * as nn from '../../onnx/index.js';
import { multiLoraDeltas } from './multi-lora.js';
import { type LlamaParams } from './params.js';

export function linear(p: LlamaParams, path: string, x: nn.Value): nn.Value {
  p.noteLinearInput(path, x);
  let w = p.linearWeight(path);
  const lora = p.loraBranch(path);
  if (lora?.mask) {
    const delta = nn.mul(nn.mul(nn.matmul(lora.B, lora.A), lora.mask), lora.scaling);
    w = nn.add(w, delta);
  }
  let y = nn.matmul(x, nn.transpose(w, [1, 0]));
  if (lora && !lora.mask) {
    const down = nn.matmul(x, nn.transpose(lora.A, [1, 0]));
    y = nn.add(y, nn.mul(nn.matmul(down, nn.transpose(lora.B, [1, 0])), lora.scaling));
  }
  for (const delta of multiLoraDeltas(p, path, x)) y = nn.add(y, delta);
  if (p.hasBias(path)) y = nn.add(y, p.weight(`${path}.bias`));
  return y;
}
