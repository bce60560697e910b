// Every adapter a replica serves, laid out as the per-row branches of multi-lora.ts take them:
// JD bundles as one JD branch per module (all bundles' clusters side by side, Σ̃ per adapter),
// raw PEFT adapters as stacked, gathered LoRA factors. Names stay at the API edge: a request
// resolves its name to a route of integer slots once (vLLM's model_manager keeps the same split),
// and slot −1 means "no adapter in this branch", which the graph reads as the zero last slot.
// A pack is plain typed arrays, so it crosses to the engine thread by transfer, not by copy.
import type { JdBundle } from '../formats/jd-bundle.js';
import { basisKey, sigmaKey } from '../formats/jd-bundle.js';
import type { LoraWeights } from '../model/llama/index.js';
import { gatherInputNames, jdInputNames } from '../model/llama/index.js';
import * as nn from '../onnx/index.js';

/** Slots of one request's adapter; −1: not in that branch. The base model is all −1. */
export interface AdapterRoute {
  jdSlot: number;
  jdCluster: number;
  gatherSlot: number;
}

export const BASE_ROUTE: Readonly<AdapterRoute> = Object.freeze({ jdSlot: -1, jdCluster: 0, gatherSlot: -1 });

export interface JdModulePack {
  path: string;
  inFeatures: number;
  outFeatures: number;
  /** Padded rank R: the largest rank any bundle has for this module. */
  rank: number;
  /** K = clusters · R. */
  columns: number;
  V: Float32Array; // [in, K]
  U: Float32Array; // [K, out]
  fold: Float32Array; // [K, R]
  clusterOfColumn: BigInt64Array; // [K]
  sigma: Float32Array; // [N + 1, R, R], norm_i·Σ_iᵀ, last zero
}

export interface GatherModulePack {
  path: string;
  inFeatures: number;
  outFeatures: number;
  rank: number;
  A: Float32Array; // [M + 1, in, R] = Aᵀ
  B: Float32Array; // [M + 1, R, out] = s·Bᵀ
}

export interface AdapterPack {
  /** Names the adapter set the slots refer to (the bundle set revision; '' for raw adapters only). */
  id: string;
  jdAdapters: number;
  jdClusters: number;
  gatherAdapters: number;
  jd: JdModulePack[];
  gather: GatherModulePack[];
}

export interface PackedAdapters {
  pack: AdapterPack;
  routes: ReadonlyMap<string, AdapterRoute>;
}

/** Modules with a branch, sorted: what decides the graph (and so the session) a pack needs. */
export function packSignature(pack: AdapterPack): { jd: string[]; gather: string[] } {
  return { jd: pack.jd.map((m) => m.path).sort(), gather: pack.gather.map((m) => m.path).sort() };
}

export function isEmptyPack(pack: AdapterPack): boolean {
  return pack.jd.length === 0 && pack.gather.length === 0;
}

/**
 * Packs bundles (JD form) and raw adapters (gathered form). Adapter names must be unique across
 * both (the AdapterStore enforces it); raw adapters are numbered in name order.
 */
export function packAdapters(id: string, bundles: readonly JdBundle[], raw: ReadonlyMap<string, LoraWeights>): PackedAdapters {
  const routes = new Map<string, AdapterRoute>();
  const jd = packJd(bundles, routes);
  const names = [...raw.keys()].sort();
  names.forEach((name, slot) => {
    if (routes.has(name)) throw new Error(`adapter ${JSON.stringify(name)} is both in a bundle and a raw adapter: names must be unique`);
    routes.set(name, { jdSlot: -1, jdCluster: 0, gatherSlot: slot });
  });
  const gather = packGather(names.map((n) => raw.get(n) as LoraWeights));
  return { pack: { id, jdAdapters: jd.adapters, jdClusters: jd.clusters, gatherAdapters: names.length, jd: jd.modules, gather }, routes };
}

function packJd(bundles: readonly JdBundle[], routes: Map<string, AdapterRoute>): { modules: JdModulePack[]; adapters: number; clusters: number } {
  // Global numbering: clusters in bundle order then id order; adapters in manifest order.
  const clusterBase: number[] = [];
  const slotBase: number[] = [];
  let clusters = 0;
  let adapters = 0;
  const clusterIndex = bundles.map((b) => {
    clusterBase.push(clusters);
    slotBase.push(adapters);
    const ids = b.manifest.clusters.map((c) => c.id).sort((x, y) => x - y);
    clusters += ids.length;
    adapters += b.manifest.adapters.length;
    return new Map(ids.map((cid, i) => [cid, i]));
  });
  bundles.forEach((b, bi) => b.manifest.adapters.forEach((a, ai) => {
    if (routes.has(a.name)) throw new Error(`adapter ${JSON.stringify(a.name)} is in two bundles: names must be unique`);
    routes.set(a.name, { jdSlot: (slotBase[bi] as number) + ai, jdCluster: (clusterBase[bi] as number) + (clusterIndex[bi]?.get(a.cluster) as number), gatherSlot: -1 });
  }));

  const shapes = new Map<string, { inFeatures: number; outFeatures: number; rank: number }>();
  for (const b of bundles) {
    for (const m of b.manifest.modules) {
      const known = shapes.get(m.name);
      if (known && (known.inFeatures !== m.inFeatures || known.outFeatures !== m.outFeatures)) {
        throw new Error(`module ${m.name} is [${m.outFeatures}, ${m.inFeatures}] in bundle ${b.manifest.revision.slice(0, 12)} but [${known.outFeatures}, ${known.inFeatures}] in another`);
      }
      shapes.set(m.name, { inFeatures: m.inFeatures, outFeatures: m.outFeatures, rank: Math.max(known?.rank ?? 0, m.rank) });
    }
  }

  const modules: JdModulePack[] = [];
  for (const [path, { inFeatures: k, outFeatures: o, rank: R }] of [...shapes].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const K = clusters * R;
    const V = new Float32Array(k * K);
    const U = new Float32Array(K * o);
    const fold = new Float32Array(K * R);
    const clusterOfColumn = new BigInt64Array(K);
    const sigma = new Float32Array((adapters + 1) * R * R);
    for (let c = 0; c < clusters; c++) {
      for (let j = 0; j < R; j++) {
        fold[(c * R + j) * R + j] = 1;
        clusterOfColumn[c * R + j] = BigInt(c);
      }
    }
    bundles.forEach((b, bi) => {
      const mod = b.manifest.modules.find((m) => m.name === path);
      if (!mod) return; // this bundle's clusters keep zero columns for a module it does not adapt
      const r = mod.rank;
      for (const [cid, local] of clusterIndex[bi] as Map<number, number>) {
        const col = ((clusterBase[bi] as number) + local) * R;
        const Vc = tensorData(b, basisKey(path, cid, 'V'));
        const Uc = tensorData(b, basisKey(path, cid, 'U'));
        for (let i = 0; i < k; i++) for (let j = 0; j < r; j++) V[i * K + col + j] = Vc[i * r + j] as number;
        for (let j = 0; j < r; j++) for (let t = 0; t < o; t++) U[(col + j) * o + t] = Uc[t * r + j] as number;
      }
      const full = b.manifest.settings.method === 'jd-full';
      b.manifest.adapters.forEach((a, ai) => {
        const norm = a.modules[path]?.norm ?? 0;
        const s = tensorData(b, sigmaKey(path, a.name));
        const at = ((slotBase[bi] as number) + ai) * R * R;
        // Stored transposed: rows multiply on the left (z·Σ̃), the bundle's Σ acts on columns.
        if (full) for (let p = 0; p < r; p++) for (let q = 0; q < r; q++) sigma[at + q * R + p] = norm * (s[p * r + q] as number);
        else for (let p = 0; p < r; p++) sigma[at + p * R + p] = norm * (s[p] as number);
      });
    });
    modules.push({ path, inFeatures: k, outFeatures: o, rank: R, columns: K, V, U, fold, clusterOfColumn, sigma });
  }
  return { modules, adapters, clusters };
}

function packGather(adapters: readonly LoraWeights[]): GatherModulePack[] {
  const shapes = new Map<string, { inFeatures: number; outFeatures: number; rank: number }>();
  for (const a of adapters) {
    for (const [path, m] of a) {
      const [r, k] = m.A.shape as [number, number];
      const o = m.B.shape[0] as number;
      shapes.set(path, { inFeatures: k, outFeatures: o, rank: Math.max(shapes.get(path)?.rank ?? 0, r) });
    }
  }
  const out: GatherModulePack[] = [];
  for (const [path, { inFeatures: k, outFeatures: o, rank: R }] of [...shapes].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const A = new Float32Array((adapters.length + 1) * k * R);
    const B = new Float32Array((adapters.length + 1) * R * o);
    adapters.forEach((a, slot) => {
      const m = a.get(path);
      if (!m) return;
      const r = m.A.shape[0] as number;
      for (let j = 0; j < r; j++) for (let i = 0; i < k; i++) A[(slot * k + i) * R + j] = m.A.data[j * k + i] as number;
      for (let j = 0; j < r; j++) for (let t = 0; t < o; t++) B[(slot * R + j) * o + t] = m.scaling * (m.B.data[t * r + j] as number);
    });
    out.push({ path, inFeatures: k, outFeatures: o, rank: R, A, B });
  }
  return out;
}

function tensorData(b: JdBundle, key: string): Float32Array {
  const t = b.tensors.get(key);
  if (!t) throw new Error(`bundle ${b.manifest.revision.slice(0, 12)}: missing tensor ${key}`);
  return t.data;
}

/** The pack as graph feeds (adopting its arrays, no copies), built once per pack. */
export function packFeeds(pack: AdapterPack): Record<string, nn.Tensor> {
  const feeds: Record<string, nn.Tensor> = {};
  for (const m of pack.jd) {
    const n = jdInputNames(m.path);
    feeds[n.V] = nn.tensor('float32', [m.inFeatures, m.columns], m.V);
    feeds[n.U] = nn.tensor('float32', [m.columns, m.outFeatures], m.U);
    feeds[n.fold] = nn.tensor('float32', [m.columns, m.rank], m.fold);
    feeds[n.columns] = nn.tensor('int64', [m.columns], m.clusterOfColumn);
    feeds[n.sigma] = nn.tensor('float32', [pack.jdAdapters + 1, m.rank, m.rank], m.sigma);
  }
  for (const m of pack.gather) {
    const n = gatherInputNames(m.path);
    feeds[n.A] = nn.tensor('float32', [pack.gatherAdapters + 1, m.inFeatures, m.rank], m.A);
    feeds[n.B] = nn.tensor('float32', [pack.gatherAdapters + 1, m.rank, m.outFeatures], m.B);
  }
  return feeds;
}

/** The buffers to transfer when posting a pack to the engine thread. */
export function packBuffers(pack: AdapterPack): ArrayBuffer[] {
  const arrays = [...pack.jd.flatMap((m) => [m.V, m.U, m.fold, m.clusterOfColumn, m.sigma]), ...pack.gather.flatMap((m) => [m.A, m.B])];
  return arrays.map((a) => a.buffer as ArrayBuffer);
}

/** Bytes the pack holds (what serving this adapter set costs beyond the base model). */
export function packBytes(pack: AdapterPack): number {
  const arrays = [...pack.jd.flatMap((m) => [m.V, m.U, m.fold, m.clusterOfColumn, m.sigma]), ...pack.gather.flatMap((m) => [m.A, m.B])];
  return arrays.reduce((n, a) => n + a.byteLength, 0);
}
