// What a gradient rule sees, and small helpers the rules share.
import { type Graph, GraphError, type Node, type Value } from '../onnx/graph.js';
import { dimsEqual, formatShape, normAxes } from '../onnx/shape.js';
import { reduceSum } from '../onnx/ops/reduce.js';
import { reshapeLike } from '../onnx/ops/layout.js';

export interface GradContext {
  readonly graph: Graph;
  readonly node: Node;
  /** Gradient of the loss with respect to the node's (first) output, same shape. */
  readonly grad: Value;
  /** needs[i]: whether input i lies on a path from a requested parameter; skip the others. */
  readonly needs: readonly boolean[];
}

/** One gradient per node input, null where none flows (integer inputs, conditions, unneeded). */
export type GradRule = (ctx: GradContext) => (Value | null)[];

export function input(ctx: GradContext, i: number): Value {
  const v = ctx.node.inputs[i];
  if (!v) throw new GraphError(`${ctx.node.opType} node ${ctx.node.name}: has no input ${i}`);
  return v;
}

export function output(ctx: GradContext): Value {
  return ctx.node.outputs[0] as Value;
}

export function attrInt(node: Node, name: string, fallback: number): number {
  const a = node.attrs[name];
  return a && 'i' in a ? a.i : fallback;
}

export function attrFloat(node: Node, name: string, fallback: number): number {
  const a = node.attrs[name];
  return a && 'f' in a ? a.f : fallback;
}

export function attrInts(node: Node, name: string): readonly number[] | undefined {
  const a = node.attrs[name];
  return a && 'ints' in a ? a.ints : undefined;
}

/** The values of a constant int64 operand (axes, starts, shapes): rules need them at build time. */
export function constInts(ctx: GradContext, i: number): number[] {
  const v = input(ctx, i);
  const t = ctx.graph.constantOf(v);
  if (!t) throw new GraphError(`${ctx.node.opType} node ${ctx.node.name}: gradient needs input ${i} (${v.name}) to be a constant`);
  return Array.from(t.data as ArrayLike<number | bigint>, Number);
}

/** Reduction axes of a Reduce* node (input 1, or every axis when absent), normalized. */
export function reduceAxes(ctx: GradContext): number[] {
  const x = input(ctx, 0);
  const where = `${ctx.node.opType} node ${ctx.node.name}`;
  return ctx.node.inputs.length > 1 ? normAxes(constInts(ctx, 1), x.rank, where) : x.shape.map((_, i) => i);
}

/**
 * Sums a broadcast gradient back to the shape of `target`: over the leading axes it lacks and
 * the axes where it has size 1, then a Reshape drops the leading axes.
 */
export function unbroadcast(g: Value, target: Value): Value {
  if (g.rank === target.rank && g.shape.every((d, i) => dimsEqual(d, target.shape[i] as number | string))) return g;
  const lead = g.rank - target.rank;
  if (lead < 0) throw new GraphError(`cannot sum gradient ${g} back to ${target}: it has lower rank`);
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < lead) {
      axes.push(i);
      continue;
    }
    const t = target.shape[i - lead] as number | string;
    const d = g.shape[i] as number | string;
    if (dimsEqual(t, d)) continue;
    if (t !== 1) throw new GraphError(`cannot sum gradient ${g} back to ${target}${formatShape(target.shape)}: axis ${i} is ${d} vs ${t}`);
    axes.push(i);
  }
  const summed = reduceSum(g, axes, { keepdims: true });
  return lead > 0 ? reshapeLike(summed, target) : summed;
}
