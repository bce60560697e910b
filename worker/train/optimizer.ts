// AdamW (Loshchilov & Hutter) over Float32Arrays, step for step as torch.optim.AdamW:
//   p ← p·(1 − lr·λ)                       decoupled weight decay, before the Adam update
//   m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²
//   p ← p − lr · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)
// Parameters are updated in place, so the arrays fed to the training session each step are
// the optimizer's own (no copies). Plus global-norm clipping and gradient accumulation.

export type Params = ReadonlyMap<string, Float32Array>;

export interface AdamWOptions {
  beta1?: number; // default 0.9
  beta2?: number; // default 0.999
  eps?: number; // default 1e-8
  weightDecay?: number; // default 0.01, as torch
  /** Parameters exempt from weight decay (nanoGPT: norms and biases, i.e. 1-D). Default none. */
  noDecay?: ReadonlySet<string>;
}

export interface AdamWState {
  t: number;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
}

export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  private readonly noDecay: ReadonlySet<string>;
  state: AdamWState = { t: 0, m: new Map(), v: new Map() };

  constructor(opts: AdamWOptions = {}) {
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    this.noDecay = opts.noDecay ?? new Set();
    for (const [k, x] of [['beta1', this.beta1], ['beta2', this.beta2]] as const) {
      if (!(x >= 0 && x < 1)) throw new Error(`AdamW ${k} must be in [0, 1), got ${x}`);
    }
    if (!(this.eps > 0)) throw new Error(`AdamW eps must be positive, got ${this.eps}`);
    if (!(this.weightDecay >= 0)) throw new Error(`AdamW weightDecay must be ≥ 0, got ${this.weightDecay}`);
  }

  step(params: Params, grads: Params, lr: number): void {
    const t = ++this.state.t;
    const bc1 = 1 - Math.pow(this.beta1, t);
    const bc2 = 1 - Math.pow(this.beta2, t);
    const { beta1: b1, beta2: b2, eps } = this;
    for (const [name, p] of params) {
      const g = grads.get(name);
      if (!g) throw new Error(`AdamW: no gradient for parameter ${name}`);
      if (g.length !== p.length) throw new Error(`AdamW: gradient of ${name} has ${g.length} values, parameter has ${p.length}`);
      const m = this.moment(this.state.m, name, p.length);
      const v = this.moment(this.state.v, name, p.length);
      const decay = this.noDecay.has(name) ? 1 : 1 - lr * this.weightDecay;
      const stepSize = lr / bc1;
      const rootBc2 = Math.sqrt(bc2);
      for (let i = 0; i < p.length; i++) {
        const gi = g[i] as number;
        const mi = (m[i] = b1 * (m[i] as number) + (1 - b1) * gi);
        const vi = (v[i] = b2 * (v[i] as number) + (1 - b2) * gi * gi);
        p[i] = (p[i] as number) * decay - (stepSize * mi) / (Math.sqrt(vi) / rootBc2 + eps);
      }
    }
  }

  private moment(store: Map<string, Float32Array>, name: string, n: number): Float32Array {
    let a = store.get(name);
    if (!a) store.set(name, (a = new Float32Array(n)));
    return a;
  }
}

/** √Σ‖g‖² over all gradients, accumulated in float64. */
export function globalNorm(grads: Params): number {
  let sum = 0;
  for (const g of grads.values()) for (let i = 0; i < g.length; i++) sum += (g[i] as number) * (g[i] as number);
  return Math.sqrt(sum);
}

/**
 * Scales all gradients in place so their global norm is at most maxNorm (torch's
 * clip_grad_norm_: coefficient maxNorm / (norm + 1e-6), capped at 1). Returns the norm before clipping.
 */
export function clipGradNorm(grads: Params, maxNorm: number): number {
  const norm = globalNorm(grads);
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) for (const g of grads.values()) for (let i = 0; i < g.length; i++) g[i] = (g[i] as number) * coef;
  return norm;
}

/** sum += grads, elementwise per parameter; the first call adopts copies. */
export function accumulate(sum: Map<string, Float32Array>, grads: Params): void {
  for (const [name, g] of grads) {
    const s = sum.get(name);
    if (!s) sum.set(name, Float32Array.from(g));
    else for (let i = 0; i < g.length; i++) s[i] = (s[i] as number) + (g[i] as number);
  }
}
