// The K/V cache of the running batch, in the decode graph's layout: per layer key and value
// [rows, kvHeads, width, headDim] with an attention mask [rows, width]. Every row's tokens sit
// contiguously at the right end (left padding), which is what the graphs' window masks assume,
// so sequences joining from a prefill are right-aligned into the wider of the two widths, and
// when sequences leave, the columns no remaining row attends to are cut from the left.
//
// A decode step reads the cache and writes it grown by one column. Both live in buffers kept
// across steps (the step writes into the spare one, then the two swap), with room for a few
// more columns: ORT writes the grown cache straight into it, so a step allocates and copies
// nothing on this side, where returning fresh outputs would copy the whole cache into new
// buffers and leave the old ones to the garbage collector.
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

/** Columns of room a buffer gets beyond the width it is allocated for. */
const HEADROOM = 32;

export class KvBatch {
  /** Buffers of at least n·kvHeads·w·headDim floats; the cache is their prefix. */
  private caches: LayerCache[] = [];
  private spare: LayerCache[] = [];
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
    const next = this.allocate(total, wide + HEADROOM);
    const nextMask = new Uint8Array(total * wide);
    this.copyRows(this.caches, this.mask, this.w, rangeOf(this.n), next, nextMask, wide, 0, 0);
    this.copyRows(incoming, Uint8Array.from(mask), width, rangeOf(rows), next, nextMask, wide, this.n, 0);
    [this.spare, this.caches, this.mask, this.n, this.w] = [this.caches, next, nextMask, total, wide];
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
    const next = this.allocate(rows.length, wide + HEADROOM);
    const nextMask = new Uint8Array(rows.length * wide);
    this.copyRows(this.caches, this.mask, this.w, rows, next, nextMask, wide, 0, lead);
    [this.spare, this.caches, this.mask, this.n, this.w] = [this.caches, next, nextMask, rows.length, wide];
  }

  /** past.* and attention_mask [rows, width + 1] for a decode step (the new token attends to itself). */
  decodeFeeds(): Record<string, nn.Tensor> {
    const feeds = this.views(this.caches, pastName, this.w);
    feeds.attention_mask = nn.tensor('int64', [this.n, this.w + 1], this.grownMask());
    return feeds;
  }

  /** Where the decode step writes present.* (the cache grown by one column): the spare buffers. */
  decodeOutputs(): Record<string, nn.Tensor> {
    const need = this.n * this.layout.kvHeads * (this.w + 1) * this.layout.headDim;
    if (this.spare.length === 0 || (this.spare[0] as LayerCache).key.length < need) this.spare = this.allocate(this.n, this.w + 1 + HEADROOM);
    return this.views(this.spare, presentName, this.w + 1);
  }

  /** After a decode step wrote into decodeOutputs(): one more column, attended by every row. */
  advance(): void {
    [this.caches, this.spare] = [this.spare, this.caches];
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

  private views(layers: readonly LayerCache[], name: (l: number, kv: 'key' | 'value') => string, width: number): Record<string, nn.Tensor> {
    const { kvHeads, headDim } = this.layout;
    const dims = [this.n, kvHeads, width, headDim];
    const count = this.n * kvHeads * width * headDim;
    const out: Record<string, nn.Tensor> = {};
    layers.forEach((c, l) => {
      out[name(l, 'key')] = nn.tensor('float32', dims, c.key.subarray(0, count));
      out[name(l, 'value')] = nn.tensor('float32', dims, c.value.subarray(0, count));
    });
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
