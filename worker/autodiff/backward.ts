// Reverse-mode autodiff over the builder's graph: walks the nodes from a scalar loss back to
// the requested parameters and emits the gradient nodes into the same graph, so one session
// run returns the loss and the gradients together.
import { isFloat } from '../onnx/dtype.js';
import { type Graph, GraphError, type Node, type Value } from '../onnx/graph.js';
import { add } from '../onnx/ops/elementwise.js';
import { fullLike } from '../onnx/ops/indexing.js';
import { dimsEqual, formatShape } from '../onnx/shape.js';
import { type GradRule } from './context.js';
import { elementwiseRules } from './rules/elementwise.js';
import { layoutRules } from './rules/layout.js';
import { linearRules } from './rules/linear.js';
import { reduceRules } from './rules/reduce.js';

/** Gradient rules by ONNX op type (tinygrad's `pm_gradient`, as a table). */
export const GRADIENT_RULES: Readonly<Record<string, GradRule>> = {
  ...elementwiseRules,
  ...linearRules,
  ...layoutRules,
  ...reduceRules,
};

/**
 * d loss / d p for each p in `wrt` (graph inputs or trainable initializers), in order.
 * `loss` must be a float scalar (rank 0 or all dims 1).
 */
export function gradients(loss: Value, wrt: readonly Value[], rules: Readonly<Record<string, GradRule>> = GRADIENT_RULES): Value[] {
  const g = loss.graph;
  checkLoss(loss);
  for (const p of wrt) checkParameter(g, p);

  // Values that depend on some parameter: only their producers need gradient nodes.
  const live = new Set<Value>(wrt);
  const active: Node[] = [];
  for (const node of g.nodes) {
    if (node.inputs.some((v) => live.has(v))) {
      active.push(node);
      for (const o of node.outputs) live.add(o);
    }
  }
  if (!live.has(loss)) throw new GraphError(`loss ${loss} does not depend on any of ${wrt.map((p) => p.name).join(', ')}`);

  const pending = new Map<Value, Value[]>([[loss, [fullLike(loss, 1)]]]);
  const total = (v: Value): Value | undefined => {
    const parts = pending.get(v);
    if (!parts || parts.length === 0) return undefined;
    const sum = parts.reduce((a, b) => add(a, b));
    pending.set(v, [sum]);
    return sum;
  };

  for (let n = active.length - 1; n >= 0; n--) {
    const node = active[n] as Node;
    if (node.outputs.length !== 1) throw new GraphError(`${node.opType} node ${node.name}: autodiff supports single-output nodes only`);
    const out = node.outputs[0] as Value;
    const grad = total(out);
    if (!grad) continue; // does not reach the loss
    const rule = rules[node.opType];
    if (!rule) {
      throw new GraphError(`no gradient rule for op ${node.opType} (node ${node.name}); ops with rules: ${Object.keys(rules).sort().join(', ')}`);
    }
    const needs = node.inputs.map((v) => live.has(v) && isFloat(v.dtype));
    const grads = rule({ graph: g, node, grad, needs });
    node.inputs.forEach((v, i) => {
      const gi = grads[i];
      if (!needs[i] || !gi) return;
      const ok = gi.rank === v.rank && gi.shape.every((d, k) => dimsEqual(d, v.shape[k] as number | string)) && gi.dtype === v.dtype;
      if (!ok) {
        throw new GraphError(`${node.opType} node ${node.name}: gradient rule returned ${gi.dtype}${formatShape(gi.shape)} for input ${v}`);
      }
      const list = pending.get(v);
      if (list) list.push(gi);
      else pending.set(v, [gi]);
    });
  }
  // A parameter the loss does not reach gets an explicit zero gradient, not an error.
  return wrt.map((p) => total(p) ?? fullLike(p, 0));
}

function checkLoss(loss: Value): void {
  if (!isFloat(loss.dtype)) throw new GraphError(`loss ${loss} must be a float tensor, got ${loss.dtype}`);
  if (!loss.shape.every((d) => d === 1)) throw new GraphError(`loss ${loss} must be a scalar (rank 0 or all dims 1), got shape ${formatShape(loss.shape)}`);
}

function checkParameter(g: Graph, p: Value): void {
  if (p.graph !== g) throw new GraphError(`parameter ${p.name} belongs to another graph`);
  if (!isFloat(p.dtype)) throw new GraphError(`parameter ${p} must be a float tensor to have a gradient, got ${p.dtype}`);
  const ok = p.kind === 'input' || (p.kind === 'initializer' && g.isTrainable(p));
  if (!ok) throw new GraphError(`parameter ${p.name} is a ${p.kind}: gradients are taken for graph inputs or initializers marked trainable`);
}
