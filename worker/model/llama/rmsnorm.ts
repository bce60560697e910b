// RMSNorm as in transformers' LlamaRMSNorm: x / sqrt(mean(x²) + eps) · weight, no mean
// subtraction and no bias.
import * as nn from '../../onnx/index.js';

export function rmsNorm(x: nn.Value, weight: nn.Value, eps: number): nn.Value {
  const meanSquare = nn.reduceMean(nn.mul(x, x), [-1], { keepdims: true });
  return nn.mul(nn.div(x, nn.sqrt(nn.add(meanSquare, eps))), weight);
}
