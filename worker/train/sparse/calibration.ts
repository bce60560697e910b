// One decoder block as an ONNX graph that pruning runs on calibration hidden states: its output
// (the next block's input) and, for each distinct input of its linear layers, the statistics a
// pruner needs — Σ x² per channel (Wanda) or XᵀX (SparseGPT), summed over the batch's tokens in
// the graph. q/k/v share one input and gate/up another, so a block has four.
//
// The graph is built for block 0's weight names and every block's weights are fed under those
// names, so one session serves all blocks (per attention window and statistics kind).
import { LINEAR_MODULES, type LinearModule } from '../../formats/hf-checkpoint.js';
import { causalMaskFromPositions } from '../../model/llama/attention.js';
import { layerWindow, linearHasBias, type LlamaConfig, linearPath } from '../../model/llama/config.js';
import { sequentialPositions } from '../../model/llama/feeds.js';
import { decoderBlock } from '../../model/llama/graph.js';
import { LlamaParams } from '../../model/llama/params.js';
import { ropeAngles } from '../../model/llama/rope.js';
import { type WeightMap } from '../../model/llama/weights.js';
import * as nn from '../../onnx/index.js';
import { type Session, type SessionCache } from '../../onnx/session.js';

export type StatsKind = 'none' | 'sumsq' | 'gram';

interface BlockGraph {
  session: Session;
  /** Linear modules grouped by the input they share, in the order of the stats outputs. */
  groups: LinearModule[][];
}

export interface BlockRun {
  /** Output hidden states [n, T, d]. */
  hidden: Float32Array;
  /** Per input group: Σ x² [cols] or XᵀX [cols, cols], float64 sums over every token. */
  stats: Float64Array[];
  groups: LinearModule[][];
  tokens: number;
}

export class BlockRunner {
  private readonly graphs = new Map<string, Promise<BlockGraph>>();

  constructor(
    private readonly config: LlamaConfig,
    private readonly cache: SessionCache,
    /** Rows of the RoPE tables: at least the calibration sequence length. */
    private readonly maxPositions: number,
    /** Sequences per session run; the stats are summed across runs in float64. */
    private readonly batch = 8,
  ) {}

  private graph(window: number | null, stats: StatsKind): Promise<BlockGraph> {
    const key = `${window}:${stats}`;
    let g = this.graphs.get(key);
    if (!g) {
      g = this.build(window, stats);
      this.graphs.set(key, g);
    }
    return g;
  }

  private async build(window: number | null, stats: StatsKind): Promise<BlockGraph> {
    const c = this.config;
    const g = new nn.Graph('llama_block_calibration');
    const names = [`model.layers.0.input_layernorm.weight`, `model.layers.0.post_attention_layernorm.weight`];
    for (const m of LINEAR_MODULES) names.push(`${linearPath(0, m)}.weight`);
    const p = new LlamaParams(g, c, { feed: [...names, ...biasNames(c)], tapLinearInputs: true });
    const hidden = g.input('hidden', 'float32', ['B', 'T', c.hiddenSize]);
    const positions = g.input('position_ids', 'int64', ['B', 'T']);
    const angles = ropeAngles(g, c, positions, this.maxPositions);
    g.output(decoderBlock(p, 0, hidden, angles, causalMaskFromPositions(g, positions, window)).h, 'hidden_out');

    const groups: LinearModule[][] = [];
    const values: nn.Value[] = [];
    for (const m of LINEAR_MODULES) {
      const x = p.linearInputs.get(linearPath(0, m));
      if (!x) throw new Error(`block graph: linear module ${m} recorded no input`);
      const at = values.indexOf(x);
      if (at >= 0) (groups[at] as LinearModule[]).push(m);
      else {
        values.push(x);
        groups.push([m]);
      }
    }
    if (stats !== 'none') {
      values.forEach((x, i) => {
        const cols = x.shape[x.rank - 1] as number;
        if (stats === 'sumsq') g.output(nn.reduceSum(nn.mul(x, x), [0, 1]), `stats.${i}`);
        else {
          const rows = nn.reshape(x, [-1, cols]);
          g.output(nn.matmul(nn.transpose(rows, [1, 0]), rows), `stats.${i}`);
        }
      });
    }
    return { session: await this.cache.forGraph(g), groups };
  }

  /**
   * Runs block `layer` with `weights` on hidden states [n, T, d] (n sequences of T tokens),
   * `batch` sequences per run.
   */
  async run(layer: number, weights: WeightMap, hidden: Float32Array, n: number, t: number, stats: StatsKind): Promise<BlockRun> {
    const c = this.config;
    const d = c.hiddenSize;
    if (hidden.length !== n * t * d) throw new Error(`block ${layer}: hidden states hold ${hidden.length} values, expected ${n}×${t}×${d}`);
    const { session, groups } = await this.graph(layerWindow(c, layer), stats);
    const weightFeeds: Record<string, nn.Tensor> = {};
    for (const name of session.inputNames) {
      if (name === 'hidden' || name === 'position_ids') continue;
      const own = name.replace(/^model\.layers\.0\./, `model.layers.${layer}.`);
      const w = weights.get(own);
      if (!w) throw new Error(`block ${layer}: no weight ${own}`);
      weightFeeds[name] = nn.tensor('float32', w.shape, w.data);
    }
    const out = new Float32Array(n * t * d);
    const sums: Float64Array[] = [];
    for (let s = 0; s < n; s += this.batch) {
      const b = Math.min(this.batch, n - s);
      const slice = hidden.slice(s * t * d, (s + b) * t * d);
      const fetch = ['hidden_out', ...(stats === 'none' ? [] : groups.map((_, i) => `stats.${i}`))];
      const r = await session.run({ ...weightFeeds, hidden: nn.tensor('float32', [b, t, d], slice), position_ids: sequentialPositions(b, t) }, fetch);
      out.set(r.hidden_out?.data as Float32Array, s * t * d);
      if (stats === 'none') continue;
      groups.forEach((_, i) => {
        const part = r[`stats.${i}`]?.data as Float32Array;
        const acc = sums[i] ?? (sums[i] = new Float64Array(part.length));
        for (let k = 0; k < part.length; k++) acc[k] = (acc[k] as number) + (part[k] as number);
      });
    }
    return { hidden: out, stats: sums, groups, tokens: n * t };
  }
}

function biasNames(c: LlamaConfig): string[] {
  return LINEAR_MODULES.filter((m) => linearHasBias(c, m)).map((m) => `${linearPath(0, m)}.bias`);
}

/** Hidden states entering block 0: embedding rows of the calibration tokens, [n, T, d]. */
export function embedTokens(embedding: { data: Float32Array }, sequences: readonly (readonly number[])[], d: number): Float32Array {
  const t = sequences[0]?.length ?? 0;
  const out = new Float32Array(sequences.length * t * d);
  sequences.forEach((seq, s) => {
    if (seq.length !== t) throw new Error(`calibration sequence ${s} has ${seq.length} tokens, sequence 0 has ${t}`);
    seq.forEach((id, i) => out.set(embedding.data.subarray(id * d, (id + 1) * d), (s * t + i) * d));
  });
  return out;
}
