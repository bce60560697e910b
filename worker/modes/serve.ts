// tessera-worker serve: one LoRAServer replica. Loads the base model (weights in the engine
// thread), the raw adapters and the bundle set the spec file names, answers HTTP on the pod IP
// (OpenAI completions and chat, batched across adapters), and takes new bundle revisions as
// directives from the operator (load and check next to the active set, then activate), so a
// rollout never restarts the process. Runs until SIGTERM or a stop directive.
import { basename } from 'node:path';
import type { LoRAServerSpec } from '../../operator/api/v1alpha1/index.js';
import type { Directive } from '../../operator/status/wire.js';
import { readHfConfig } from '../formats/hf-config.js';
import type { DirectiveResult } from '../report/reporter.js';
import { AdapterStore, type BundleRef, type BundleSetRef } from '../serve/adapter-store.js';
import { startGeneration } from '../serve/generation.js';
import { createServeApp } from '../serve/http.js';
import { loadAdapter, type LoadedAdapter } from './load-model.js';
import { WorkloadError, type WorkloadContext } from './workload.js';

/** What the operator adds to a LoRAServer's spec file (see operator/controllers/loraserver/desired.ts). */
export interface ServeInputs {
  /** The bundle set a new replica starts with: the last one every replica activated, or the first desired one. */
  bundleSet?: BundleSetRef;
  port?: number;
}

interface ServeSpecFile {
  metadata: { name: string; namespace: string };
  spec: LoRAServerSpec;
  locations: Record<string, string>;
  inputs?: ServeInputs;
}

const DEFAULT_PORT = 8000;
const STATS_EVERY_MS = 5_000;

export interface ServeOptions {
  /** Resolves when the process should stop (SIGTERM by default). */
  stopSignal?: Promise<void>;
}

/** The fields serve reads, present and of the right kind, or a SpecInvalid error naming the first one that is not. */
function checkSpecFile(file: ServeSpecFile, path: string): void {
  const missing = (field: string): never => {
    throw new WorkloadError('SpecInvalid', `spec file ${path} has no ${field}: expected a LoRAServer spec file written by the operator`);
  };
  if (typeof file.metadata?.name !== 'string' || typeof file.metadata.namespace !== 'string') missing('metadata.name and metadata.namespace');
  if (typeof file.spec?.baseModel?.uri !== 'string') missing('spec.baseModel.uri');
  if (!Array.isArray(file.spec.adapters)) missing('spec.adapters');
  if (typeof file.locations !== 'object' || file.locations === null) missing('locations');
}

export async function runServe(ctx: WorkloadContext<ServeSpecFile>, options: ServeOptions = {}): Promise<void> {
  checkSpecFile(ctx.spec, ctx.specFile);
  const { spec, locations, inputs, metadata } = ctx.spec;
  const where = (uri: string): string => {
    const path = locations[uri];
    if (!path) throw new WorkloadError('SpecInvalid', `spec file ${ctx.specFile} has no location for ${uri}`);
    if (/^https?:\/\//.test(path)) throw new WorkloadError('NotImplemented', `fetching ${uri} over http(s) is not implemented yet; use pvc:// or file://`);
    return path;
  };
  const log = ctx.log.child({ namespace: metadata.namespace, name: metadata.name });
  const baseDir = where(spec.baseModel.uri);
  const base = await readHfConfig(baseDir).catch((err: unknown) => {
    throw new WorkloadError('BaseModelUnreadable', `base model ${spec.baseModel.uri}: ${err instanceof Error ? err.message : String(err)}`, false, { cause: err });
  });

  const raw = new Map<string, LoadedAdapter>();
  for (const a of spec.adapters) {
    try {
      raw.set(a.name, await loadAdapter(where(a.uri), base));
    } catch (err) {
      throw new WorkloadError('AdapterUnreadable', `adapter ${a.name} (${a.uri}): ${err instanceof Error ? err.message : String(err)}`, false, { cause: err });
    }
  }
  const store = new AdapterStore(base, raw);
  if (inputs?.bundleSet && inputs.bundleSet.bundles.length > 0) {
    try {
      await store.load(inputs.bundleSet);
      store.activate(inputs.bundleSet.revision);
    } catch (err) {
      throw new WorkloadError('BundleUnreadable', err instanceof Error ? err.message : String(err), true, { cause: err });
    }
  }

  const baseModelId = metadata.name || basename(baseDir);
  const generation = await startGeneration({
    modelDir: baseDir, store, raw: new Map([...raw].map(([name, a]) => [name, a.lora])), baseModelId, engine: spec.engine, log,
  }).catch((err: unknown) => {
    throw new WorkloadError('BaseModelUnreadable', `base model ${spec.baseModel.uri}: ${err instanceof Error ? err.message : String(err)}`, false, { cause: err });
  });

  let draining = false;
  const app = createServeApp({
    store, baseModelId, createdAt: Math.floor(Date.now() / 1000),
    ready: () => !draining && generation.engine.alive,
    generation: generation.deps,
    metrics: () => generation.stats.metrics(),
  });
  const host = process.env.POD_IP || '0.0.0.0';
  const port = inputs?.port ?? DEFAULT_PORT;
  await app.listen({ host, port });
  log.info({ host, port, revision: store.activeRevision, adapters: store.adapterNames().length }, 'serving');

  const reporter = ctx.reporter;
  const report = (): void => reporter?.serving({
    loadedAdapters: store.adapterNames(), activeRevision: store.activeRevision,
    ...generation.snapshot(),
  });
  report();
  const stats = setInterval(report, STATS_EVERY_MS);

  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  reporter?.onDirective(async (d: Directive): Promise<DirectiveResult> => {
    switch (d.body) {
      case 'loadBundle': {
        const set = await store.load({ revision: d.loadBundle.revision, bundles: d.loadBundle.bundles.map((b): BundleRef => ({ ...b })) });
        log.info({ revision: set.revision, bundles: set.bundles.length, adapters: set.adapters.size }, 'bundle set loaded');
        return { ok: true, message: `loaded revision ${set.revision.slice(0, 12)}: ${set.adapters.size} adapters from ${set.bundles.length} bundles` };
      }
      case 'activate': {
        const previous = store.activeRevision;
        store.activate(d.activate.revision);
        // Reported before the ack goes out, so the operator sees the new revision when the ack arrives.
        report();
        log.info({ revision: d.activate.revision, previous }, 'bundle set activated');
        return { ok: true, message: `serving revision ${d.activate.revision.slice(0, 12)}` };
      }
      case 'drain':
        draining = true;
        return { ok: true, message: 'draining: readiness now fails' };
      case 'stop':
        log.info({ reason: d.stop.reason }, 'stop directive');
        stop();
        return { ok: true };
    }
  });

  const onSignal = (): void => stop();
  process.once('SIGTERM', onSignal);
  try {
    await Promise.race([stopped, options.stopSignal ?? new Promise<never>(() => undefined)]);
  } finally {
    process.off('SIGTERM', onSignal);
    clearInterval(stats);
    draining = true;
    await app.close();
    await generation.close();
    log.info('stopped serving');
  }
}
