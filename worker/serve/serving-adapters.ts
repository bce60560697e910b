// Keeps the engine's adapter pack in step with the adapter store: when the store's active
// bundle set changes (a rollout activated a new revision), the next request packs the new set
// and hands it to the engine, which switches between batches. Requests resolve the OpenAI
// `model` field here, to the base model or to an adapter's slots in the current pack.
import type { LoraWeights } from '../model/llama/index.js';
import { type AdapterPack, type AdapterRoute, packAdapters, packBytes } from './adapter-pack.js';
import type { AdapterStore } from './adapter-store.js';

export type ModelTarget =
  | { kind: 'base' }
  | { kind: 'adapter'; name: string; packId: string; route: AdapterRoute };

export interface PackInfo {
  id: string;
  adapters: number;
  bytes: number;
  buildMs: number;
}

export class ServingAdapters {
  private routes: ReadonlyMap<string, AdapterRoute> = new Map();
  private packedRevision: string | undefined;

  constructor(
    private readonly store: AdapterStore,
    private readonly raw: ReadonlyMap<string, LoraWeights>,
    readonly baseModelId: string,
    private readonly onPack: (pack: AdapterPack, info: PackInfo) => void,
  ) {}

  /**
   * The pack for the store's active set when it is not the one packed last, else undefined. The
   * routes switch to it at once: the caller must hand it to the engine before submitting more.
   */
  nextPack(): { pack: AdapterPack; info: PackInfo } | undefined {
    const revision = this.store.activeRevision;
    if (revision === this.packedRevision) return undefined;
    const started = Date.now();
    const bundles = this.store.active?.bundles.map((b) => b.bundle) ?? [];
    const { pack, routes } = packAdapters(revision, bundles, this.raw);
    this.routes = routes;
    this.packedRevision = revision;
    return { pack, info: { id: revision, adapters: routes.size, bytes: packBytes(pack), buildMs: Date.now() - started } };
  }

  /** What a request's `model` names now; undefined: nothing this replica serves. */
  resolve(model: string): ModelTarget | undefined {
    if (model === this.baseModelId) return { kind: 'base' };
    const next = this.nextPack();
    if (next) this.onPack(next.pack, next.info);
    const route = this.routes.get(model);
    if (!route) return undefined;
    return { kind: 'adapter', name: model, packId: this.packedRevision ?? '', route };
  }
}
