// tessera-worker compress: the AdapterCluster Job. Reads the spec and the adapters the operator
// resolved, compresses them jointly, writes the bundle under <output>/<revision> atomically, and
// reports progress, metrics and the new revision to the status hub.
import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { AdapterClusterSpec } from '../../operator/api/v1alpha1/index.js';
import { compressAdapters } from '../compress/run.js';
import { WorkloadError, type WorkloadContext } from './workload.js';

interface CompressSpecFile {
  spec: AdapterClusterSpec;
  locations: Record<string, string>;
  inputs?: { adapters?: { name: string; uri: string }[] };
}

/** Structured results travel as JSON strings in Completion.outputs (a string map on the wire). */
export const COMPLETION_KEYS = { revision: 'revision', bundleUri: 'bundleUri', summary: 'summaryJson' } as const;

export async function runCompress(ctx: WorkloadContext<CompressSpecFile>): Promise<void> {
  const { spec, locations, inputs } = ctx.spec;
  const where = (uri: string): string => {
    const path = locations[uri];
    if (!path) throw new WorkloadError('SpecInvalid', `spec file ${ctx.specFile} has no location for ${uri}`);
    if (/^https?:\/\//.test(path)) throw new WorkloadError('NotImplemented', `fetching ${uri} over http(s) is not implemented yet; use pvc:// or file://`);
    return path;
  };
  const method = spec.compression.method;
  if (method === 'none') throw new WorkloadError('NotImplemented', 'compression method none (serve adapters raw) is not implemented yet');
  const adapters = (inputs?.adapters ?? spec.adapters.filter((a) => a.uri).map((a) => ({ name: a.name, uri: a.uri as string })))
    .map((a) => ({ name: a.name, dir: where(a.uri) }));
  if (adapters.length === 0) throw new WorkloadError('SpecInvalid', 'no adapters to compress');

  const outputRoot = where(spec.output.uri);
  await mkdir(outputRoot, { recursive: true });
  const pending = join(outputRoot, `.pending-${randomBytes(6).toString('hex')}`);
  const report = ctx.reporter;
  const started = Date.now();
  let summary;
  try {
    summary = await compressAdapters({
      adapters, method, rank: spec.compression.rank, clusters: spec.compression.clusters,
      targetErrorPercent: spec.compression.targetErrorPercent, iterations: spec.compression.iterations,
      output: pending, baseModel: spec.baseModel.uri,
      onProgress: (p) => {
        const percent = p.total > 0 ? Math.round((100 * p.done) / p.total) : 0;
        const elapsed = (Date.now() - started) / 1000;
        report?.progress({ step: p.done, totalSteps: p.total, percent, etaSeconds: percent > 0 ? Math.round((elapsed * (100 - percent)) / percent) : 0, stage: 'Compressing' });
      },
    });
  } catch (err) {
    await rm(pending, { recursive: true, force: true });
    const message = err instanceof Error ? err.message : String(err);
    // Bad inputs (a missing adapter, a shape that does not match) do not heal on retry.
    throw new WorkloadError('AdapterUnreadable', message, false, { cause: err });
  }
  const final = join(outputRoot, summary.revision);
  if (await stat(final).catch(() => undefined)) await rm(pending, { recursive: true, force: true });
  else await rename(pending, final);
  const bundleUri = `${spec.output.uri.replace(/\/$/, '')}/${summary.revision}`;
  ctx.log.info({ revision: summary.revision, bundle: final, meanErrorPercent: summary.meanErrorPercent }, 'bundle written');

  report?.metrics({ meanErrorPercent: summary.meanErrorPercent, parameterSavedPercent: 100 * summary.parameters.savedRatio, adapters: summary.adapters.length });
  report?.completion({
    outputs: {
      [COMPLETION_KEYS.revision]: summary.revision,
      [COMPLETION_KEYS.bundleUri]: bundleUri,
      [COMPLETION_KEYS.summary]: JSON.stringify({
        adapters: summary.adapters.map((a) => ({ name: a.name, cluster: a.cluster, reconstructionErrorPercent: a.meanErrorPercent })),
        clusters: summary.clusters,
      }),
    },
    artifacts: [],
  });
  report?.progress({ step: 1, totalSteps: 1, percent: 100, etaSeconds: 0, stage: 'Succeeded' });
}
