// A byte-level BPE trainer (no JavaScript library trains BPE; @huggingface/tokenizers only
// encodes). It learns merges the way the Rust `tokenizers` BpeTrainer does: split text with
// the ByteLevel pattern, count words, then repeatedly merge the most frequent adjacent pair.
//
// Speed comes from never recounting: pair counts are updated by deltas in only the words
// that contain the merged pair (an index pair → words), and the best pair comes from a
// max-heap with lazy invalidation (a popped entry whose count is stale is re-pushed).

import { BYTE_LEVEL_PATTERN, BYTE_TO_CHAR } from './byte-level.js';

export interface BpeTrainerOptions {
  /** Final vocabulary size: special tokens + 256 byte symbols + merges. */
  vocabSize: number;
  /** Pairs seen fewer times than this are never merged (default 2). */
  minFrequency?: number;
  /** Added first, in order, with ids 0..n-1 (default <unk>, <s>, </s>, <pad>, Llama's order). */
  specialTokens?: string[];
}

export interface TrainedBpe {
  /** token → id: special tokens, then the byte alphabet (by code point), then merges in order. */
  vocab: Map<string, number>;
  merges: Array<[string, string]>;
  specialTokens: string[];
}

export const DEFAULT_SPECIAL_TOKENS = ['<unk>', '<s>', '</s>', '<pad>'];

// Pair keys pack two symbol ids into one number (ids < 2^21 keeps it below 2^53).
const SHIFT = 0x200000;
const pairKey = (a: number, b: number): number => a * SHIFT + b;

/** Max-heap on count; ties go to the smaller pair key, which makes training deterministic. */
class PairHeap {
  private counts: number[] = [];
  private keys: number[] = [];

  get size(): number {
    return this.keys.length;
  }

  private above(i: number, j: number): boolean {
    const ci = this.counts[i] as number;
    const cj = this.counts[j] as number;
    return ci > cj || (ci === cj && (this.keys[i] as number) < (this.keys[j] as number));
  }

  private swap(i: number, j: number): void {
    [this.counts[i], this.counts[j]] = [this.counts[j] as number, this.counts[i] as number];
    [this.keys[i], this.keys[j]] = [this.keys[j] as number, this.keys[i] as number];
  }

  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    let i = this.keys.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.above(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  pop(): { count: number; key: number } | undefined {
    if (this.keys.length === 0) return undefined;
    const top = { count: this.counts[0] as number, key: this.keys[0] as number };
    const lastCount = this.counts.pop() as number;
    const lastKey = this.keys.pop() as number;
    if (this.keys.length > 0) {
      this.counts[0] = lastCount;
      this.keys[0] = lastKey;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < this.keys.length && this.above(l, best)) best = l;
        if (r < this.keys.length && this.above(r, best)) best = r;
        if (best === i) break;
        this.swap(i, best);
        i = best;
      }
    }
    return top;
  }
}

/** Count pre-tokenized words (as UTF-8 byte strings) over the corpus. */
function countWords(corpus: Iterable<string>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const text of corpus) {
    for (const m of text.matchAll(BYTE_LEVEL_PATTERN)) {
      const w = m[0];
      counts.set(w, (counts.get(w) ?? 0) + 1);
    }
  }
  return counts;
}

export function trainByteLevelBpe(corpus: Iterable<string>, options: BpeTrainerOptions): TrainedBpe {
  const specialTokens = options.specialTokens ?? DEFAULT_SPECIAL_TOKENS;
  const minFrequency = options.minFrequency ?? 2;
  const base = specialTokens.length + 256;
  if (!Number.isInteger(options.vocabSize) || options.vocabSize < base || options.vocabSize >= SHIFT) {
    throw new Error(`vocabSize ${options.vocabSize} must be an integer in [${base}, ${SHIFT}) (${specialTokens.length} special tokens + 256 bytes at least)`);
  }
  if (new Set(specialTokens).size !== specialTokens.length) throw new Error(`special tokens must be distinct, got ${JSON.stringify(specialTokens)}`);

  // Symbols 0..255 are the byte alphabet in code point order and each merge appends one,
  // so symbol ids order like the Rust trainer's token ids and ties break the same way.
  const symbols: string[] = [...BYTE_TO_CHAR].sort((x, y) => (x.codePointAt(0) as number) - (y.codePointAt(0) as number));
  const byteSymbol = BYTE_TO_CHAR.map((c) => symbols.indexOf(c));
  const symbolIds = new Map(symbols.map((sym, i) => [sym, i]));
  const encoder = new TextEncoder();
  const words: number[][] = [];
  const freqs: number[] = [];
  for (const [w, f] of countWords(corpus)) {
    words.push(Array.from(encoder.encode(w), (b) => byteSymbol[b] as number));
    freqs.push(f);
  }

  const pairCounts = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  words.forEach((word, w) => {
    const f = freqs[w] as number;
    for (let i = 0; i + 1 < word.length; i++) {
      const k = pairKey(word[i] as number, word[i + 1] as number);
      pairCounts.set(k, (pairCounts.get(k) ?? 0) + f);
      let set = pairWords.get(k);
      if (!set) pairWords.set(k, (set = new Set()));
      set.add(w);
    }
  });
  const heap = new PairHeap();
  for (const [k, c] of pairCounts) heap.push(c, k);

  const merges: Array<[number, number]> = [];
  const delta = new Map<number, number>();
  while (base + symbols.length - 256 < options.vocabSize) {
    const top = heap.pop();
    if (!top) break;
    const current = pairCounts.get(top.key) ?? 0;
    if (current !== top.count) {
      if (current > 0) heap.push(current, top.key);
      continue;
    }
    if (current < minFrequency) break;
    const a = Math.floor(top.key / SHIFT);
    const b = top.key % SHIFT;
    // Two merge paths can spell the same string ("ab"+"c", "a"+"bc"); like the Rust
    // trainer, both then share one symbol and the vocabulary grows only once.
    const spelled = (symbols[a] as string) + (symbols[b] as string);
    let id = symbolIds.get(spelled);
    if (id === undefined) {
      id = symbols.length;
      symbols.push(spelled);
      symbolIds.set(spelled, id);
    }
    merges.push([a, b]);

    delta.clear();
    for (const w of pairWords.get(top.key) ?? []) {
      const word = words[w] as number[];
      const f = freqs[w] as number;
      // Merge left to right, as encoding will; count the pairs that vanish and appear.
      const merged: number[] = [];
      for (let i = 0; i < word.length; i++) {
        if (i + 1 < word.length && word[i] === a && word[i + 1] === b) {
          merged.push(id);
          i++;
        } else {
          merged.push(word[i] as number);
        }
      }
      if (merged.length === word.length) continue; // stale index entry
      for (let i = 0; i + 1 < word.length; i++) {
        const k = pairKey(word[i] as number, word[i + 1] as number);
        delta.set(k, (delta.get(k) ?? 0) - f);
      }
      for (let i = 0; i + 1 < merged.length; i++) {
        const k = pairKey(merged[i] as number, merged[i + 1] as number);
        delta.set(k, (delta.get(k) ?? 0) + f);
        if (merged[i] === id || merged[i + 1] === id) {
          let set = pairWords.get(k);
          if (!set) pairWords.set(k, (set = new Set()));
          set.add(w);
        }
      }
      words[w] = merged;
    }
    for (const [k, d] of delta) {
      if (d === 0) continue;
      const c = (pairCounts.get(k) ?? 0) + d;
      if (c > 0) {
        pairCounts.set(k, c);
        // Only increases need a fresh entry; a decreased pair is fixed up when popped.
        if (d > 0) heap.push(c, k);
      } else {
        pairCounts.delete(k);
        pairWords.delete(k);
      }
    }
    pairCounts.delete(top.key);
    pairWords.delete(top.key);
  }

  const vocab = new Map<string, number>();
  for (const t of specialTokens) vocab.set(t, vocab.size);
  for (let id = 0; id < symbols.length; id++) {
    const sym = symbols[id] as string;
    // A merge can spell a special token (e.g. "<s>"); the Rust trainer then reuses its id.
    if (!vocab.has(sym)) vocab.set(sym, vocab.size);
  }
  return {
    vocab,
    merges: merges.map(([x, y]) => [symbols[x] as string, symbols[y] as string]),
    specialTokens: [...specialTokens],
  };
}
