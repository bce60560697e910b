// The sampling chain for one sequence, as OpenAI and vLLM define the parameters: temperature 0
// is greedy (argmax, deterministic), otherwise softmax(logits / temperature) restricted to the
// top_k most likely tokens and then to the smallest set whose probability reaches top_p. Each
// sequence has its own RNG (seeded when the request gives a seed), so what it samples does not
// depend on which other sequences share its batch.
import { Rng } from '../train/rng.js';

export interface SamplingParams {
  /** 0: greedy. */
  temperature: number;
  /** Nucleus mass in (0, 1]; 1 keeps every token. */
  topP: number;
  /** Keep only the k most likely tokens; 0 keeps every token. */
  topK: number;
  /** Seed of this sequence's RNG; null: a random one. */
  seed: number | null;
}

export const GREEDY: Readonly<SamplingParams> = Object.freeze({ temperature: 0, topP: 1, topK: 0, seed: null });

export class Sampler {
  private readonly rng: Rng;

  constructor(private readonly params: SamplingParams) {
    this.rng = new Rng(params.seed ?? Math.floor(Math.random() * 2 ** 32));
  }

  /** A token id from row `row` of [B, vocab] logits. */
  sample(logits: Float32Array, row: number, vocab: number): number {
    const base = row * vocab;
    const { temperature, topP, topK } = this.params;
    if (temperature <= 0) return argmax(logits, base, vocab);
    let ids = Array.from({ length: vocab }, (_, j) => j);
    // Sorted by logit, ties by id, so equal seeds give equal tokens on every platform.
    ids.sort((a, b) => (logits[base + b] as number) - (logits[base + a] as number) || a - b);
    if (topK > 0) ids = ids.slice(0, Math.min(topK, vocab));
    const max = logits[base + (ids[0] as number)] as number;
    const weights = ids.map((j) => Math.exp(((logits[base + j] as number) - max) / temperature));
    const total = weights.reduce((a, b) => a + b, 0);
    let keep = ids.length;
    if (topP < 1) {
      let mass = 0;
      for (let i = 0; i < ids.length; i++) {
        mass += (weights[i] as number) / total;
        if (mass >= topP) {
          keep = i + 1;
          break;
        }
      }
    }
    const kept = weights.slice(0, keep).reduce((a, b) => a + b, 0);
    let u = this.rng.next() * kept;
    for (let i = 0; i < keep; i++) {
      u -= weights[i] as number;
      if (u <= 0) return ids[i] as number;
    }
    return ids[keep - 1] as number;
  }
}

/** The first index of the largest logit of a row. */
export function argmax(logits: Float32Array, base: number, vocab: number): number {
  let best = 0;
  let max = -Infinity;
  for (let j = 0; j < vocab; j++) {
    const x = logits[base + j] as number;
    if (x > max) [max, best] = [x, j];
  }
  return best;
}
