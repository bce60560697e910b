// Kind-specific status mappings on top of the generic one: an AdapterCluster's completion carries
// its bundle revision, the bundle's digest and per-adapter results, which belong in its own status
// fields.
import { defaultStatusMapper, type StatusPatch } from './sink.js';
import type { ObjectState } from './state.js';

const SHA256_HEX = /^[a-f0-9]{64}$/;

interface CompressSummaryJson {
  adapters?: { name: string; cluster: number; reconstructionErrorPercent: number }[];
  clusters?: { id: number; size: number; rank: number; meanErrorPercent: number }[];
}

function adapterClusterStatus(state: Readonly<ObjectState>): StatusPatch {
  const { outputs: _outputs, metrics: _metrics, ...status } = defaultStatusMapper(state);
  const out = state.completion?.outputs ?? {};
  if (out.revision) status.revision = out.revision;
  if (out.bundleUri) status.bundleUri = out.bundleUri;
  // The digest pins the bytes a LoRAServer loads; a malformed one would fail the whole patch.
  if (out.bundleDigest && SHA256_HEX.test(out.bundleDigest)) status.bundleDigest = out.bundleDigest;
  const saved = state.metrics?.values.parameterSavedPercent;
  if (saved !== undefined && Number.isFinite(saved)) status.parameterSavedPercent = Math.round(saved * 100) / 100;
  if (out.summaryJson) {
    const summary = JSON.parse(out.summaryJson) as CompressSummaryJson;
    const round = (x: number): number => Math.round(x * 1000) / 1000;
    if (summary.adapters) {
      status.adapterCount = summary.adapters.length;
      status.adapters = summary.adapters.map((a) => ({ name: a.name, cluster: a.cluster, reconstructionErrorPercent: round(a.reconstructionErrorPercent), servedAs: 'compressed' }));
    }
    if (summary.clusters) status.clusters = summary.clusters.map((c) => ({ ...c, meanErrorPercent: round(c.meanErrorPercent) }));
  }
  return status;
}

/** The mapping the operator's hub uses for every Tessera kind. */
export function tesseraStatusMapper(state: Readonly<ObjectState>): StatusPatch {
  return state.ref.kind === 'AdapterCluster' ? adapterClusterStatus(state) : defaultStatusMapper(state);
}
