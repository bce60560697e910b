// Token batches for causal-LM training: windows of seqLen+1 tokens from one long token
// stream (nanoGPT's get_batch), targets shifted by one, and a weight per target so ignored
// positions (IGNORE_INDEX) drop out of the mean.

/** Targets with this id carry no loss (the transformers / PyTorch convention). */
export const IGNORE_INDEX = -100;

export interface Batch {
  batch: number;
  seqLen: number;
  inputIds: BigInt64Array; // [batch, seqLen]
  targets: BigInt64Array; // [batch, seqLen], ignored ones replaced by 0
  /** 1 where the target counts, 0 where it is ignored. */
  mask: Float32Array;
}

/** A batch from explicit windows, each seqLen+1 tokens long. */
export function batchFromWindows(windows: readonly (ArrayLike<number>)[]): Batch {
  const seqLen = (windows[0]?.length ?? 0) - 1;
  if (seqLen < 1) throw new Error(`batch windows need at least 2 tokens, got ${seqLen + 1}`);
  const n = windows.length * seqLen;
  const out: Batch = { batch: windows.length, seqLen, inputIds: new BigInt64Array(n), targets: new BigInt64Array(n), mask: new Float32Array(n) };
  windows.forEach((w, b) => {
    if (w.length !== seqLen + 1) throw new Error(`batch window ${b} has ${w.length} tokens, window 0 has ${seqLen + 1}`);
    for (let t = 0; t < seqLen; t++) {
      const target = w[t + 1] as number;
      out.inputIds[b * seqLen + t] = BigInt(Math.max(0, w[t] as number));
      out.targets[b * seqLen + t] = BigInt(target === IGNORE_INDEX ? 0 : target);
      out.mask[b * seqLen + t] = target === IGNORE_INDEX ? 0 : 1;
    }
  });
  return out;
}

/** `batch` windows at positions drawn by `random` (uniform integer in [0, n)). */
export function sampleBatch(tokens: ArrayLike<number>, batch: number, seqLen: number, random: (n: number) => number): Batch {
  const starts = tokens.length - seqLen - 1;
  if (starts < 0) throw new Error(`the token stream has ${tokens.length} tokens: sequences of ${seqLen} need at least ${seqLen + 1}`);
  const windows: number[][] = [];
  for (let b = 0; b < batch; b++) {
    const s = random(starts + 1);
    windows.push(Array.from({ length: seqLen + 1 }, (_, i) => tokens[s + i] as number));
  }
  return batchFromWindows(windows);
}

/** Consecutive non-overlapping windows from the start, at most maxBatches batches: the same every call. */
export function evalBatches(tokens: ArrayLike<number>, batch: number, seqLen: number, maxBatches: number): Batch[] {
  const out: Batch[] = [];
  let pos = 0;
  while (out.length < maxBatches) {
    const windows: number[][] = [];
    while (windows.length < batch && pos + seqLen + 1 <= tokens.length) {
      windows.push(Array.from({ length: seqLen + 1 }, (_, i) => tokens[pos + i] as number));
      pos += seqLen;
    }
    if (windows.length === 0) break;
    out.push(batchFromWindows(windows));
    if (windows.length < batch) break;
  }
  if (out.length === 0) throw new Error(`the evaluation stream has ${tokens.length} tokens: sequences of ${seqLen} need at least ${seqLen + 1}`);
  return out;
}

export function countTokens(batches: readonly Batch[]): number {
  return batches.reduce((n, b) => n + b.mask.reduce((s, x) => s + x, 0), 0);
}
