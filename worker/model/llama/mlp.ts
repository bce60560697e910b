// SwiGLU feed-forward: down(silu(gate(x)) ⊙ up(x)).
import * as nn from '../../onnx/index.js';
import { linear } from './lora.js';
import { type LlamaParams } from './params.js';

export function mlp(p: LlamaParams, layer: number, x: nn.Value): nn.Value {
  const path = (m: string): string => `model.layers.${layer}.mlp.${m}`;
  const hidden = nn.mul(nn.silu(linear(p, path('gate_proj'), x)), linear(p, path('up_proj'), x));
  return linear(p, path('down_proj'), hidden);
}
