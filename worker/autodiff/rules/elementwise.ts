// Gradient rules for elementwise ops. y is the node's output, g the incoming gradient.
import { isFloat } from '../../onnx/dtype.js';
import { cast, div, greater, log, mul, neg, pow, sub, where } from '../../onnx/ops/elementwise.js';
import { type GradRule, input, output, unbroadcast } from '../context.js';

export const elementwiseRules: Record<string, GradRule> = {
  Identity: ({ grad }) => [grad],
  Add: (ctx) => [unbroadcast(ctx.grad, input(ctx, 0)), unbroadcast(ctx.grad, input(ctx, 1))],
  Sub: (ctx) => [unbroadcast(ctx.grad, input(ctx, 0)), ctx.needs[1] ? unbroadcast(neg(ctx.grad), input(ctx, 1)) : null],
  Mul: (ctx) => {
    const [a, b] = [input(ctx, 0), input(ctx, 1)];
    return [ctx.needs[0] ? unbroadcast(mul(ctx.grad, b), a) : null, ctx.needs[1] ? unbroadcast(mul(ctx.grad, a), b) : null];
  },
  Div: (ctx) => {
    const [a, b] = [input(ctx, 0), input(ctx, 1)];
    // d(a/b)/db = -a/b² = -y/b
    return [ctx.needs[0] ? unbroadcast(div(ctx.grad, b), a) : null, ctx.needs[1] ? unbroadcast(neg(div(mul(ctx.grad, output(ctx)), b)), b) : null];
  },
  Pow: (ctx) => {
    const [x, e] = [input(ctx, 0), input(ctx, 1)];
    const dx = ctx.needs[0] ? unbroadcast(mul(ctx.grad, mul(e, pow(x, sub(e, 1)))), x) : null;
    const de = ctx.needs[1] ? unbroadcast(mul(ctx.grad, mul(output(ctx), log(x))), e) : null;
    return [dx, de];
  },
  Neg: ({ grad }) => [neg(grad)],
  Sqrt: (ctx) => [div(mul(ctx.grad, 0.5), output(ctx))],
  Exp: (ctx) => [mul(ctx.grad, output(ctx))],
  Log: (ctx) => [div(ctx.grad, input(ctx, 0))],
  Sigmoid: (ctx) => {
    const y = output(ctx);
    return [mul(ctx.grad, mul(y, sub(1, y)))];
  },
  Tanh: (ctx) => {
    const y = output(ctx);
    return [mul(ctx.grad, sub(1, mul(y, y)))];
  },
  // The subgradient at 0 is 0, as in PyTorch.
  Relu: (ctx) => [where(greater(input(ctx, 0), 0), ctx.grad, 0)],
  Where: (ctx) => {
    const [cond, x, y] = [input(ctx, 0), input(ctx, 1), input(ctx, 2)];
    return [
      null,
      ctx.needs[1] ? unbroadcast(where(cond, ctx.grad, 0), x) : null,
      ctx.needs[2] ? unbroadcast(where(cond, 0, ctx.grad), y) : null,
    ];
  },
  // Float→float only: a cast from an integer or bool input carries no gradient.
  Cast: (ctx) => {
    const x = input(ctx, 0);
    return [isFloat(x.dtype) ? cast(ctx.grad, x.dtype) : null];
  },
};
