// The K/V cache of the running batch, in the decode graph's layout: per layer key and value
// [rows, kvHeads, width, headDim] with an attention mask [rows, width]. Every row's tokens sit
// contiguously at the right end (left padding), which is what the graphs' window masks assume,
// so sequences joining from a prefill are right-aligned into the wider of the two widths, and
// when sequences leave, the columns no remaining row attends to are cut from the left.
import { pastName, presentName } from '../model/llama/index.js';
import * as nn from '../onnx/index.js';

export interface KvLayout {
  layers: number;
  kvHeads: number;
  headDim: number;
}

export interface LayerCache {
  key: Float32Array;
  value: Float32Array;
}

export class KvBatch {
  private caches: LayerCache[] = [];
  private mask = new Uint8Array(0);
  private n = 0;
  private w = 0;

  constructor(private readonly layout: KvLayout) {}

  get rows(): number {
    return this.n;
  }

  get width(): number {
    return this.w;
  }

  /** Adds `rows` sequences from a prefill's present.* outputs ([rows, kvHeads, width, headDim]) and its mask. */
  append(outputs: Readonly<Record<string, nn.Tensor>>, mask: ArrayLike<number>, rows: number, width: number): void {
    const incoming = this.readLayers(outputs, presentName, rows, width);
    const total = this.n + rows;
    const wide = Math.max(this.w, width);
    const next = this.allocate(total, wide);
    const nextMask = new Uint8Array(total * wide);
    this.copyRows(this.caches, this.mask, this.w, rangeOf(this.n), next, nextMask, wide, 0, 0);
    this.copyRows(incoming, Uint8Array.from(mask), width, rangeOf(rows), next, nextMask, wide, this.n, 0);
    [this.caches, this.mask, this.n, this.w] = [next, nextMask, total, wide];
  }

  /** Keeps these rows, in this order, and drops the leading columns none of them attends to. */
  keep(rows: readonly number[]): void {
    if (rows.length === this.n && rows.every((r, i) => r === i) && !this.hasDeadColumns(rows)) return;
    let lead = this.w;
    for (const r of rows) {
      const first = this.mask.subarray(r * this.w, (r + 1) * this.w).indexOf(1);
      lead = Math.min(lead, first < 0 ? this.w : first);
    }
    const wide = rows.length === 0 ? 0 : this.w - lead;
    const next = this.allocate(rows.length, wide);
    const nextMask = new Uint8Array(rows.length * wide);
    this.copyRows(this.caches, this.mask, this.w, rows, next, nextMask, wide, 0, lead);
    [this.caches, this.mask, this.n, this.w] = [next, nextMask, rows.length, wide];
  }

  /** past.* and attention_mask [rows, width + 1] for a decode step (the new token attends to itself). */
  decodeFeeds(): Record<string, nn.Tensor> {
    const { kvHeads, headDim } = this.layout;
    const feeds: Record<string, nn.Tensor> = {};
    this.caches.forEach((c, l) => {
      feeds[pastName(l, 'key')] = nn.tensor('float32', [this.n, kvHeads, this.w, headDim], c.key);
      feeds[pastName(l, 'value')] = nn.tensor('float32', [this.n, kvHeads, this.w, headDim], c.value);
    });
    feeds.attention_mask = nn.tensor('int64', [this.n, this.w + 1], this.grownMask());
    return feeds;
  }

  /** Takes a decode step's present.* outputs as the cache: one more column, attended by every row. */
  advance(outputs: Readonly<Record<string, nn.Tensor>>): void {
    this.caches = this.readLayers(outputs, presentName, this.n, this.w + 1);
    const grown = new Uint8Array(this.n * (this.w + 1));
    for (let r = 0; r < this.n; r++) {
      grown.set(this.mask.subarray(r * this.w, (r + 1) * this.w), r * (this.w + 1));
      grown[r * (this.w + 1) + this.w] = 1;
    }
    [this.mask, this.w] = [grown, this.w + 1];
  }

  private grownMask(): BigInt64Array {
    const out = new BigInt64Array(this.n * (this.w + 1));
    for (let r = 0; r < this.n; r++) {
      for (let c = 0; c < this.w; c++) out[r * (this.w + 1) + c] = BigInt(this.mask[r * this.w + c] as number);
      out[r * (this.w + 1) + this.w] = 1n;
    }
    return out;
  }

  private hasDeadColumns(rows: readonly number[]): boolean {
    if (this.w === 0) return false;
    return rows.every((r) => this.mask[r * this.w] === 0);
  }

  private readLayers(outputs: Readonly<Record<string, nn.Tensor>>, name: (l: number, kv: 'key' | 'value') => string, rows: number, width: number): LayerCache[] {
    const { layers, kvHeads, headDim } = this.layout;
    const expected = rows * kvHeads * width * headDim;
    const read = (key: string): Float32Array => {
      const t = outputs[key];
      if (!t || !(t.data instanceof Float32Array)) throw new Error(`kv cache: output ${key} is missing or not float32`);
      if (t.data.length !== expected) throw new Error(`kv cache: output ${key} is [${t.dims.join(', ')}]: expected [${rows}, ${kvHeads}, ${width}, ${headDim}]`);
      return t.data;
    };
    return Array.from({ length: layers }, (_, l) => ({ key: read(name(l, 'key')), value: read(name(l, 'value')) }));
  }

  private allocate(rows: number, width: number): LayerCache[] {
    const n = rows * this.layout.kvHeads * width * this.layout.headDim;
    return Array.from({ length: this.layout.layers }, () => ({ key: new Float32Array(n), value: new Float32Array(n) }));
  }

  /**
   * Copies rows `from` of a cache `srcWidth` wide (columns from `skip` on) to consecutive rows
   * from `at` of one `dstWidth` wide, right-aligned.
   */
  private copyRows(src: readonly LayerCache[], srcMask: Uint8Array, srcWidth: number, from: readonly number[], dst: readonly LayerCache[], dstMask: Uint8Array, dstWidth: number, at: number, skip: number): void {
    const { kvHeads, headDim } = this.layout;
    const cols = srcWidth - skip;
    const shift = dstWidth - cols;
    from.forEach((r, i) => {
      const d = at + i;
      dstMask.set(srcMask.subarray(r * srcWidth + skip, (r + 1) * srcWidth), d * dstWidth + shift);
      for (let l = 0; l < src.length; l++) {
        for (const kv of ['key', 'value'] as const) {
          const s = (src[l] as LayerCache)[kv];
          const t = (dst[l] as LayerCache)[kv];
          for (let h = 0; h < kvHeads; h++) {
            const sOff = ((r * kvHeads + h) * srcWidth + skip) * headDim;
            t.set(s.subarray(sOff, sOff + cols * headDim), ((d * kvHeads + h) * dstWidth + shift) * headDim);
          }
        }
      }
    });
  }
}

function rangeOf(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
