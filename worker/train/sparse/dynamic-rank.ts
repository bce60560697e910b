// A LoRA adapter whose rank changes per module between LoSA rounds. Each module keeps factors at
// the largest rank it may reach, A [r_max, in] and B [out, r_max]; at rank r the model sees
// A[:r] and B[:, :r] (the model's LoRA inputs have a symbolic rank, so one graph serves every
// allocation), and the scaling stays fixed whatever r is.
//
// Growing a module uncovers rows of A and columns of B. With the paper's rule (`discard`, the
// default) a shrinking module gives its cut columns up — B's become zero and A's are drawn anew —
// so growth later adds B = 0 columns and leaves the model's output unchanged, as a fresh LoRA
// would. The reference code (`keep`) only slices, so trained columns it cut come back as they were.
import { buildLoraAdapter, type LoraAdapter, loraConfig } from '../../formats/peft.js';
import { makeTensor } from '../../formats/tensor.js';
import { type LoraModuleWeights } from '../../model/llama/feeds.js';
import { loraInputNames } from '../../model/llama/params.js';

export type ShrinkRule = 'discard' | 'keep';

interface Factors {
  out: number;
  in: number;
  A: Float32Array; // [maxRank, in]
  B: Float32Array; // [out, maxRank]
  rank: number;
}

export class DynamicRankAdapter {
  private readonly modules = new Map<string, Factors>();

  /**
   * `random` is uniform in [0, 1): A is drawn as PEFT draws it (kaiming-uniform, bound 1/√in), B
   * starts at zero; every module starts at `rank`.
   */
  constructor(
    shapes: ReadonlyMap<string, readonly [number, number]>,
    readonly maxRank: number,
    rank: number,
    readonly scaling: number,
    private readonly random: () => number,
  ) {
    if (!(Number.isInteger(rank) && Number.isInteger(maxRank) && rank >= 1 && rank <= maxRank)) throw new Error(`dynamic-rank adapter: rank ${rank} must be an integer in [1, maxRank ${maxRank}]`);
    for (const [path, [out, inF]] of shapes) {
      const A = new Float32Array(maxRank * inF);
      this.draw(A, inF, 0, maxRank);
      this.modules.set(path, { out, in: inF, A, B: new Float32Array(out * maxRank), rank });
    }
  }

  get paths(): string[] {
    return [...this.modules.keys()];
  }

  rankOf(path: string): number {
    return this.module(path).rank;
  }

  /** Sets each listed module's rank; `discard` resets what a shrinking module cuts off. */
  setRanks(ranks: ReadonlyMap<string, number>, rule: ShrinkRule = 'discard'): void {
    for (const [path, r] of ranks) {
      const f = this.module(path);
      if (!(Number.isInteger(r) && r >= 1 && r <= this.maxRank)) throw new Error(`${path}: rank ${r} must be an integer in [1, ${this.maxRank}]`);
      if (r < f.rank && rule === 'discard') {
        this.draw(f.A, f.in, r, f.rank);
        for (let o = 0; o < f.out; o++) f.B.fill(0, o * this.maxRank + r, o * this.maxRank + f.rank);
      }
      f.rank = r;
    }
  }

  /** A[:r], B[:, :r] of every module as copies, with the scaling times `sign` (−1 unmerges). */
  active(sign: 1 | -1 = 1): Map<string, LoraModuleWeights> {
    const out = new Map<string, LoraModuleWeights>();
    for (const [path, f] of this.modules) {
      const B = new Float32Array(f.out * f.rank);
      for (let o = 0; o < f.out; o++) B.set(f.B.subarray(o * this.maxRank, o * this.maxRank + f.rank), o * f.rank);
      out.set(path, {
        A: { shape: [f.rank, f.in], data: f.A.slice(0, f.rank * f.in) },
        B: { shape: [f.out, f.rank], data: B },
        scaling: sign * this.scaling,
      });
    }
    return out;
  }

  /** Takes trained factors back by their graph input names (what a LoRA TrainModel's params hold). */
  absorb(params: ReadonlyMap<string, Float32Array>): void {
    for (const [path, f] of this.modules) {
      const names = loraInputNames(path);
      const A = params.get(names.A);
      const B = params.get(names.B);
      if (!A || !B || A.length !== f.rank * f.in || B.length !== f.out * f.rank) throw new Error(`${path}: trained factors missing or not at rank ${f.rank}`);
      f.A.set(A);
      for (let o = 0; o < f.out; o++) f.B.set(B.subarray(o * f.rank, (o + 1) * f.rank), o * this.maxRank);
    }
  }

  /** Full factors by graph input name, for a checkpoint; `restore` takes them back. */
  state(): Map<string, { shape: number[]; data: Float32Array }> {
    const out = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [path, f] of this.modules) {
      const names = loraInputNames(path);
      out.set(names.A, { shape: [this.maxRank, f.in], data: f.A });
      out.set(names.B, { shape: [f.out, this.maxRank], data: f.B });
    }
    return out;
  }

  restore(state: ReadonlyMap<string, Float32Array>, ranks: ReadonlyMap<string, number>): void {
    for (const [path, f] of this.modules) {
      const names = loraInputNames(path);
      const A = state.get(names.A);
      const B = state.get(names.B);
      const r = ranks.get(path);
      if (!A || !B || A.length !== f.A.length || B.length !== f.B.length || r === undefined) throw new Error(`${path}: the saved adapter state does not fit this run`);
      f.A.set(A);
      f.B.set(B);
      f.rank = r;
    }
  }

  /**
   * The PEFT adapter at the current ranks: r is the largest, rank_pattern names every module below
   * it, and alpha_pattern keeps alpha/r at the fixed scaling for each.
   */
  toPeft(targetModules: readonly string[], baseModelName: string | null): LoraAdapter {
    const ranks = [...this.modules.values()].map((f) => f.rank);
    const top = Math.max(...ranks);
    const rankPattern: Record<string, number> = {};
    const alphaPattern: Record<string, number> = {};
    for (const [path, f] of this.modules) {
      if (f.rank === top) continue;
      // Keyed without the leading "model.": PEFT before 0.13 matches keys only after a dot.
      const key = path.replace(/^model\./, '');
      rankPattern[key] = f.rank;
      alphaPattern[key] = this.scaling * f.rank;
    }
    const config = loraConfig({ r: top, loraAlpha: this.scaling * top, targetModules: [...targetModules], rankPattern, alphaPattern, baseModelNameOrPath: baseModelName });
    return buildLoraAdapter(config, [...this.active()].map(([name, m]) => ({ name, A: makeTensor('F32', [...m.A.shape], m.A.data), B: makeTensor('F32', [...m.B.shape], m.B.data) })));
  }

  private module(path: string): Factors {
    const f = this.modules.get(path);
    if (!f) throw new Error(`dynamic-rank adapter: no module ${path}`);
    return f;
  }

  private draw(A: Float32Array, inF: number, from: number, to: number): void {
    const bound = 1 / Math.sqrt(inF);
    for (let i = from * inF; i < to * inF; i++) A[i] = (2 * this.random() - 1) * bound;
  }
}
