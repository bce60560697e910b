// Reverse-mode autodiff over worker/onnx graphs.
export { gradients, GRADIENT_RULES } from './backward.js';
export type { GradContext, GradRule } from './context.js';
