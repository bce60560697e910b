// Where each tensor of a graph comes from: base weights are baked in as initializers unless
// they are fed (trained parameters, weights that change between runs); LoRA factors and masks
// are always inputs so adapters and sparsity patterns switch without rebuilding a session.
import * as nn from '../../onnx/index.js';
import { allLinearPaths, type LlamaConfig } from './config.js';
import { gatherInputNames, jdInputNames, type MultiLoraOptions } from './multi-lora.js';
import { type WeightMap, weightSpecs } from './weights.js';

export interface ParamOptions {
  /** Base weights to bake in; may be omitted when every weight is fed. */
  weights?: WeightMap;
  /** Base weight names fed as graph inputs instead of initializers, or 'all'. */
  feed?: readonly string[] | 'all';
  /** Linear module paths (model.layers.0.self_attn.q_proj) that get a LoRA branch. */
  lora?: readonly string[];
  /** Linear module paths whose base weight is multiplied by a mask input `${path}.weight_mask`. */
  weightMasks?: readonly string[];
  /** Linear module paths whose LoRA delta B·A is multiplied by a mask input `${path}.lora_mask`. */
  loraMasks?: readonly string[];
  /**
   * Linear module paths (each with a LoRA branch) whose adapted weight W + s·(B·A)[⊙M] goes through
   * a straight-through fake quantizer on a fixed grid of `bits` (QA-SparsePEFT; lora.ts).
   */
  loraQuant?: { paths: readonly string[]; bits: number };
  /** Linear module paths with per-row adapter branches (serving many adapters in one batch). */
  multiLora?: MultiLoraOptions;
  /** Record the input of every linear layer (LlamaParams.linearInputs): pruners take statistics of them. */
  tapLinearInputs?: boolean;
}

/** Input names of a module's LoRA branch; A is [r, in], B is [out, r], scaling a float32 scalar. */
export function loraInputNames(path: string): { A: string; B: string; scaling: string } {
  return { A: `${path}.lora_A.weight`, B: `${path}.lora_B.weight`, scaling: `${path}.lora_scaling` };
}

/**
 * Inputs of a module's fake quantizer: copies of A and B fed with the same values as the factors
 * (the branch built on them has no gradient path), and the grid: scales and zero points
 * [out, groups] and each input column's group [in] (int64).
 */
export function loraQuantInputNames(path: string): { A: string; B: string; scales: string; zeros: string; groups: string } {
  return { A: `${path}.lora_A.held`, B: `${path}.lora_B.held`, scales: `${path}.quant_scales`, zeros: `${path}.quant_zeros`, groups: `${path}.quant_groups` };
}

export const weightMaskName = (path: string): string => `${path}.weight_mask`;
export const loraMaskName = (path: string): string => `${path}.lora_mask`;

export interface JdValues {
  V: nn.Value;
  U: nn.Value;
  fold: nn.Value;
  columns: nn.Value;
  sigma: nn.Value;
}

export interface GatherValues {
  A: nn.Value;
  B: nn.Value;
}

export interface LoraQuantValues {
  /** The factors again, as inputs no gradient is taken through. */
  A: nn.Value;
  B: nn.Value;
  scales: nn.Value;
  zeros: nn.Value;
  groups: nn.Value;
  /** The largest code, 2^bits − 1. */
  maxq: number;
}

export interface LoraValues {
  A: nn.Value;
  B: nn.Value;
  scaling: nn.Value;
  mask: nn.Value | undefined;
  quant: LoraQuantValues | undefined;
}

export class LlamaParams {
  private readonly values = new Map<string, nn.Value>();
  private readonly shapes: Map<string, number[]>;
  private readonly feed: ReadonlySet<string>;
  private readonly lora: ReadonlySet<string>;
  private readonly weightMasks: ReadonlySet<string>;
  private readonly loraMasks: ReadonlySet<string>;
  private readonly loraQuant: ReadonlySet<string>;
  private readonly jd: ReadonlySet<string>;
  private readonly gathered: ReadonlySet<string>;

  constructor(
    readonly graph: nn.Graph,
    readonly config: LlamaConfig,
    private readonly opts: ParamOptions,
  ) {
    this.shapes = new Map(weightSpecs(config).map((s) => [s.name, s.shape]));
    this.feed = new Set(opts.feed === 'all' ? this.shapes.keys() : (opts.feed ?? []));
    const linears = new Set(allLinearPaths(config));
    const checkPaths = (what: string, paths: readonly string[] | undefined): ReadonlySet<string> => {
      for (const p of paths ?? []) {
        if (!linears.has(p)) throw new Error(`${what}: unknown linear module ${p}: expected paths like ${[...linears].slice(0, 3).join(', ')}, …`);
      }
      return new Set(paths ?? []);
    };
    for (const name of this.feed) {
      if (!this.shapes.has(name)) throw new Error(`feed: unknown weight ${name}: expected one of ${[...this.shapes.keys()].join(', ')}`);
    }
    this.lora = checkPaths('lora', opts.lora);
    this.weightMasks = checkPaths('weightMasks', opts.weightMasks);
    this.loraMasks = checkPaths('loraMasks', opts.loraMasks);
    this.loraQuant = checkPaths('loraQuant', opts.loraQuant?.paths);
    for (const p of this.loraQuant) {
      if (!this.lora.has(p)) throw new Error(`loraQuant: ${p} has a fake quantizer but no LoRA branch: add it to lora`);
    }
    this.jd = checkPaths('multiLora.jd', opts.multiLora?.jd);
    this.gathered = checkPaths('multiLora.gather', opts.multiLora?.gather);
    for (const p of this.loraMasks) {
      if (!this.lora.has(p)) throw new Error(`loraMasks: ${p} has a LoRA mask but no LoRA branch: add it to lora`);
    }
  }

  /** Module path → the value its linear layer multiplies (modules that share an input share the value). */
  readonly linearInputs = new Map<string, nn.Value>();

  /** Called by every linear layer with its input; kept only when tapLinearInputs is set. */
  noteLinearInput(path: string, x: nn.Value): void {
    if (this.opts.tapLinearInputs) this.linearInputs.set(path, x);
  }

  /** A base weight by HF name: an input when fed, else an initializer from `weights`. */
  weight(name: string): nn.Value {
    const known = this.values.get(name);
    if (known) return known;
    const shape = this.shapes.get(name);
    if (!shape) throw new Error(`unknown weight ${name} for model type ${this.config.modelType}`);
    let v: nn.Value;
    if (this.feed.has(name)) {
      v = this.graph.input(name, 'float32', shape);
    } else {
      const w = this.opts.weights?.get(name);
      if (!w) throw new Error(`weight ${name} is neither fed nor given in weights: pass it in weights or list it in feed`);
      v = this.graph.initializer(name, nn.tensor('float32', shape, w.data));
    }
    this.values.set(name, v);
    return v;
  }

  /** The weight of a linear module, times its mask input when the module has one. */
  linearWeight(path: string): nn.Value {
    const w = this.weight(`${path}.weight`);
    if (!this.weightMasks.has(path)) return w;
    return nn.mul(w, this.graph.input(weightMaskName(path), 'float32', w.shape));
  }

  hasBias(path: string): boolean {
    return this.shapes.has(`${path}.bias`);
  }

  loraBranch(path: string): LoraValues | undefined {
    if (!this.lora.has(path)) return undefined;
    const [out, inF] = this.shapes.get(`${path}.weight`) as number[];
    const names = loraInputNames(path);
    // The rank is a symbolic dim per module, so adapters of any rank share one session.
    const r = `${path}.r`;
    return {
      A: this.graph.input(names.A, 'float32', [r, inF as number]),
      B: this.graph.input(names.B, 'float32', [out as number, r]),
      scaling: this.graph.input(names.scaling, 'float32', []),
      mask: this.loraMasks.has(path) ? this.graph.input(loraMaskName(path), 'float32', [out as number, inF as number]) : undefined,
      quant: this.loraQuant.has(path) ? this.quantValues(path, out as number, inF as number, r) : undefined,
    };
  }

  private quantValues(path: string, out: number, inF: number, r: string): LoraQuantValues {
    const names = loraQuantInputNames(path);
    const groups = `${path}.quant.G`;
    return {
      A: this.graph.input(names.A, 'float32', [r, inF]),
      B: this.graph.input(names.B, 'float32', [out, r]),
      scales: this.graph.input(names.scales, 'float32', [out, groups]),
      zeros: this.graph.input(names.zeros, 'float32', [out, groups]),
      groups: this.graph.input(names.groups, 'int64', [inF]),
      maxq: 2 ** (this.opts.loraQuant?.bits ?? 4) - 1,
    };
  }

  /** A per-row int64 [B] input, created on first use and shared by every module. */
  rowInput(name: string): nn.Value {
    let v = this.values.get(name);
    if (!v) this.values.set(name, (v = this.graph.input(name, 'int64', ['B'])));
    return v;
  }

  jdBranch(path: string): JdValues | undefined {
    if (!this.jd.has(path)) return undefined;
    const [out, inF] = this.shapes.get(`${path}.weight`) as [number, number];
    const names = jdInputNames(path);
    // K (clusters × rank), R and the adapter count change with the bundle set, not the session.
    const [k, r] = [`${path}.jd.K`, `${path}.jd.R`];
    return {
      V: this.graph.input(names.V, 'float32', [inF, k]),
      U: this.graph.input(names.U, 'float32', [k, out]),
      fold: this.graph.input(names.fold, 'float32', [k, r]),
      columns: this.graph.input(names.columns, 'int64', [k]),
      sigma: this.graph.input(names.sigma, 'float32', ['lora.jd.N', r, r]),
    };
  }

  gatherBranch(path: string): GatherValues | undefined {
    if (!this.gathered.has(path)) return undefined;
    const [out, inF] = this.shapes.get(`${path}.weight`) as [number, number];
    const names = gatherInputNames(path);
    const r = `${path}.gather.R`;
    return {
      A: this.graph.input(names.A, 'float32', ['lora.gather.N', inF, r]),
      B: this.graph.input(names.B, 'float32', ['lora.gather.N', r, out]),
    };
  }

  /** Every fed value created so far, by name (weights, LoRA factors, masks). */
  get fedNames(): string[] {
    return this.graph.inputs.map((v) => v.name);
  }
}
