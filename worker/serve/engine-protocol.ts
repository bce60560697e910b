// The messages between a replica's main thread (HTTP, gRPC reports) and its engine thread
// (model, sessions, batching). Token ids and events go up, requests and adapter packs go down;
// packs travel as transferred ArrayBuffers.
import type { AdapterPack } from './adapter-pack.js';
import type { EngineEvent, EngineLimits, SequenceSpec } from './engine-core.js';

export interface EngineThreadData {
  /** The Hugging Face checkpoint directory the thread loads. */
  modelDir: string;
  limits: EngineLimits;
  /** ORT threads for one op; default: ORT's choice (one per physical core). */
  intraOpThreads?: number;
  /** The pack served from the start (its buffers are transferred with the thread's start). */
  pack: AdapterPack | null;
}

export type ToEngine =
  | { type: 'pack'; pack: AdapterPack | null }
  | { type: 'submit'; seqs: SequenceSpec[] }
  | { type: 'cancel'; ids: number[] }
  | { type: 'stop' };

export type FromEngine =
  | { type: 'ready'; loadMs: number }
  | { type: 'events'; events: EngineEvent[] }
  | { type: 'fatal'; message: string };
