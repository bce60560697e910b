// tessera-worker compress: the AdapterCluster Job. Reads the spec and the adapters the operator
// resolved, checks them against the base model, compresses them jointly — or, with
// spec.compression.incremental, extends the newest revision under the output by projecting the
// new adapters onto its bases — writes the bundle under <output>/<revision> atomically, and
// reports progress, metrics, the new revision and its digest to the status hub.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { AdapterClusterSpec } from '../../operator/api/v1alpha1/index.js';
import { latestBundle } from '../compress/incremental.js';
import { AdapterDigestError } from '../compress/inputs.js';
import { compressAdapters, type CompressSummary } from '../compress/run.js';
import { JD_WEIGHTS } from '../formats/jd-bundle.js';
import { WorkloadError, type WorkloadContext } from './workload.js';

interface CompressSpecFile {
  spec: AdapterClusterSpec;
  locations: Record<string, string>;
  inputs?: { adapters?: { name: string; uri: string; sha256?: string }[] };
}

/** Structured results travel as JSON strings in Completion.outputs (a string map on the wire). */
export const COMPLETION_KEYS = { revision: 'revision', bundleUri: 'bundleUri', bundleDigest: 'bundleDigest', updatePath: 'updatePath', summary: 'summaryJson' } as const;

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
  const adapters = (inputs?.adapters ?? spec.adapters.filter((a) => a.uri).map((a) => ({ name: a.name, uri: a.uri as string, ...(a.sha256 ? { sha256: a.sha256 } : {}) })))
    .map((a) => ({ name: a.name, dir: where(a.uri), ...(a.sha256 ? { sha256: a.sha256 } : {}) }));
  if (adapters.length === 0) throw new WorkloadError('SpecInvalid', 'no adapters to compress');

  const outputRoot = where(spec.output.uri);
  await mkdir(outputRoot, { recursive: true });
  // The schema defaults incremental to true; a spec file written without defaults means the same.
  const previous = spec.compression.incremental === false ? undefined : await latestBundle(outputRoot);
  const pending = join(outputRoot, `.pending-${randomBytes(6).toString('hex')}`);
  const report = ctx.reporter;
  const started = Date.now();
  let summary: CompressSummary;
  try {
    summary = await compressAdapters({
      adapters, method, rank: spec.compression.rank, clusters: spec.compression.clusters,
      targetErrorPercent: spec.compression.targetErrorPercent, iterations: spec.compression.iterations,
      output: pending, baseModel: spec.baseModel.uri, baseModelDir: where(spec.baseModel.uri),
      ...(previous ? { incremental: { previous } } : {}),
      onProgress: (p) => {
        const percent = p.total > 0 ? Math.round((100 * p.done) / p.total) : 0;
        const elapsed = (Date.now() - started) / 1000;
        report?.progress({ step: p.done, totalSteps: p.total, percent, etaSeconds: percent > 0 ? Math.round((elapsed * (100 - percent)) / percent) : 0, stage: 'Compressing' });
      },
    });
  } catch (err) {
    await rm(pending, { recursive: true, force: true });
    if (err instanceof WorkloadError) throw err;
    const message = err instanceof Error ? err.message : String(err);
    // Bad inputs (a missing adapter, a shape that does not match, a wrong digest) do not heal on retry.
    throw new WorkloadError(err instanceof AdapterDigestError ? 'DigestMismatch' : 'AdapterUnreadable', message, false, { cause: err });
  }
  const final = join(outputRoot, summary.revision);
  if (await stat(final).catch(() => undefined)) {
    await rm(pending, { recursive: true, force: true });
    // The revision names inputs and settings, not bytes: the digest must be of the file that stays.
    const weights = await readFile(join(final, JD_WEIGHTS));
    summary = { ...summary, bundleDigest: createHash('sha256').update(weights).digest('hex'), bundleBytes: weights.length };
  } else await rename(pending, final);
  const bundleUri = `${spec.output.uri.replace(/\/$/, '')}/${summary.revision}`;
  ctx.log.info({ revision: summary.revision, bundle: final, meanErrorPercent: summary.meanErrorPercent, update: summary.update.path, reason: summary.update.reason, bundleDigest: summary.bundleDigest }, 'bundle written');

  report?.metrics({ meanErrorPercent: summary.meanErrorPercent, parameterSavedPercent: 100 * summary.parameters.savedRatio, adapters: summary.adapters.length, projectedAdapters: summary.update.projected.length, ...convergenceMetrics(summary) });
  report?.artifact({ name: 'bundle', uri: `${bundleUri}/${JD_WEIGHTS}`, sha256: summary.bundleDigest, sizeBytes: summary.bundleBytes });
  report?.completion({
    outputs: {
      [COMPLETION_KEYS.revision]: summary.revision,
      [COMPLETION_KEYS.bundleUri]: bundleUri,
      [COMPLETION_KEYS.bundleDigest]: summary.bundleDigest,
      [COMPLETION_KEYS.updatePath]: summary.update.path,
      [COMPLETION_KEYS.summary]: JSON.stringify({
        adapters: summary.adapters.map((a) => ({ name: a.name, cluster: a.cluster, reconstructionErrorPercent: a.meanErrorPercent })),
        clusters: summary.clusters,
      }),
    },
    artifacts: [{ name: 'bundle', uri: `${bundleUri}/${JD_WEIGHTS}`, sha256: summary.bundleDigest, sizeBytes: summary.bundleBytes }],
  });
  report?.progress({ step: 1, totalSteps: 1, percent: 100, etaSeconds: 0, stage: 'Succeeded' });
}

/**
 * One number per question a reader of the object asks about convergence: how many module slots
 * were fitted, how many stopped at the tolerance rather than the cap, and the most iterations
 * any took. The per-slot detail is in the manifest.
 */
export function convergenceMetrics(summary: Pick<CompressSummary, 'convergence'>): Record<string, number> {
  const slots = summary.convergence.length;
  const converged = summary.convergence.filter((c) => c.converged).length;
  return {
    fittedSlots: slots,
    convergedSlots: converged,
    convergedSlotsPercent: slots > 0 ? (100 * converged) / slots : 100,
    maxIterations: summary.convergence.reduce((m, c) => Math.max(m, c.iterations), 0),
  };
}
