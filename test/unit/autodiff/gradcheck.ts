// Central finite differences against the emitted gradient graph, both run in float64 by ORT.
// The loss is Σ out·W with a fixed random W, so every output element carries a distinct
// weight and a wrong rule cannot hide behind a symmetric sum (a plain Σ softmax has zero gradient).
import { gradients } from '../../../worker/autodiff/index.js';
import * as nn from '../../../worker/onnx/index.js';
import { cache, randn, rng } from '../onnx/helpers.js';

export interface GradCase {
  name: string;
  /** Float64 graph inputs that gradients are checked for. */
  inputs: Record<string, number[]>;
  /** Draw these inputs from |N(0,1)| + 0.5 (logs, roots, divisors). */
  positive?: readonly string[];
  build: (x: Record<string, nn.Value>) => nn.Value;
  /** Finite-difference step; default 1e-5. */
  step?: number;
  /** Tolerance as |analytic − numeric| ≤ tol·(1 + |numeric|); default 1e-6. */
  tol?: number;
}

export interface GradReport {
  opTypes: Set<string>;
  checked: number;
  worst: number;
}

export async function checkGradients(c: GradCase, seed: number): Promise<GradReport> {
  const random = rng(seed);
  const g = new nn.Graph(c.name);
  const x: Record<string, nn.Value> = {};
  const feeds: Record<string, nn.Tensor<'float64'>> = {};
  for (const [name, dims] of Object.entries(c.inputs)) {
    const n = dims.reduce((a, b) => a * b, 1);
    const data = randn(random, n).map((v) => (c.positive?.includes(name) ? Math.abs(v) + 0.5 : v));
    x[name] = g.input(name, 'float64', dims);
    feeds[name] = nn.tensor('float64', dims, data);
  }
  const out = c.build(x);
  const opTypes = new Set(g.nodes.map((n) => n.opType));
  const dims = out.shape.map((d) => {
    if (typeof d !== 'number') throw new Error(`${c.name}: output shape must be static for the check`);
    return d;
  });
  const weights = g.constant('float64', dims, randn(random, dims.reduce((a, b) => a * b, 1)));
  const loss = nn.reduceSum(nn.mul(out, weights));
  g.output(loss, 'loss');
  const params = Object.values(x);
  gradients(loss, params).forEach((gv, i) => g.output(gv, `grad_${(params[i] as nn.Value).name}`));

  const session = await cache.forGraph(g);
  const analytic = await session.run(feeds);
  const lossAt = async (f: Record<string, nn.Tensor>): Promise<number> => ((await session.run(f, ['loss'])).loss?.data as Float64Array)[0] as number;

  const h = c.step ?? 1e-5;
  const tol = c.tol ?? 1e-6;
  let checked = 0;
  let worst = 0;
  for (const [name, t] of Object.entries(feeds)) {
    const grad = analytic[`grad_${name}`]?.data as Float64Array;
    for (let i = 0; i < t.data.length; i++) {
      const plus = Float64Array.from(t.data);
      const minus = Float64Array.from(t.data);
      plus[i] = (plus[i] as number) + h;
      minus[i] = (minus[i] as number) - h;
      const lp = await lossAt({ ...feeds, [name]: nn.tensor('float64', t.dims, plus) });
      const lm = await lossAt({ ...feeds, [name]: nn.tensor('float64', t.dims, minus) });
      const numeric = (lp - lm) / (2 * h);
      const a = grad[i] as number;
      const err = Math.abs(a - numeric) / (1 + Math.abs(numeric));
      worst = Math.max(worst, Number.isNaN(err) ? Infinity : err);
      if (!(err <= tol)) {
        throw new Error(`${c.name}: d loss/d ${name}[${i}] is ${a}, finite differences give ${numeric} (error ${err.toExponential(2)} > ${tol})`);
      }
      checked++;
    }
  }
  return { opTypes, checked, worst };
}
