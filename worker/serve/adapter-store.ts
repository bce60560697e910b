// The adapters a serve replica can answer for: JD bundles (one per AdapterCluster, rolled out
// as one revision of the whole set) and raw PEFT adapters. A new revision is loaded and checked
// next to the active one (`load`), and only then swapped in (`activate`), so a bundle that does
// not load never takes the place of one that works.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import type { LlamaFamilyConfig } from '../formats/hf-config.js';
import { LINEAR_MODULES, linearModulePath, linearShape } from '../formats/hf-checkpoint.js';
import { JD_WEIGHTS, readJdBundle, type JdBundle } from '../formats/jd-bundle.js';
import type { LoadedAdapter } from '../modes/load-model.js';

/** One AdapterCluster's bundle as the operator names it (the wire's BundleRef). */
export interface BundleRef {
  adapterCluster: string;
  revision: string;
  /** The bundle directory as this process sees it. */
  uri: string;
  /** sha256 of bundle.safetensors; empty: not checked. */
  sha256: string;
}

export interface BundleSetRef {
  revision: string;
  bundles: readonly BundleRef[];
}

/** Where a served adapter name comes from. */
export type AdapterEntry =
  | { kind: 'bundle'; name: string; adapterCluster: string; bundle: JdBundle }
  | { kind: 'raw'; name: string; adapter: LoadedAdapter };

export interface BundleSet {
  revision: string;
  bundles: ReadonlyArray<{ ref: BundleRef; bundle: JdBundle }>;
  adapters: ReadonlyMap<string, AdapterEntry>;
}

export class BundleLoadError extends Error {}

/** At most this many revisions are kept loaded besides the active one. */
const MAX_STAGED = 2;

export class AdapterStore {
  private readonly staged = new Map<string, BundleSet>();
  private current: BundleSet | undefined;
  private readonly linearShapes: Map<string, [number, number]>;

  constructor(private readonly base: LlamaFamilyConfig, private readonly raw: ReadonlyMap<string, LoadedAdapter> = new Map()) {
    this.linearShapes = new Map();
    for (let layer = 0; layer < base.numHiddenLayers; layer++) {
      for (const m of LINEAR_MODULES) this.linearShapes.set(linearModulePath(layer, m), linearShape(base, m));
    }
  }

  /** The revision being served; '' before any bundle set was activated. */
  get activeRevision(): string {
    return this.current?.revision ?? '';
  }

  get active(): BundleSet | undefined {
    return this.current;
  }

  /** Revisions loaded and checked, ready to activate. */
  get stagedRevisions(): string[] {
    return [...this.staged.keys()];
  }

  /** Every adapter name a request may use now, sorted. */
  adapterNames(): string[] {
    return [...new Set([...this.raw.keys(), ...(this.current?.adapters.keys() ?? [])])].sort();
  }

  /** The adapter a request names, or undefined when this replica does not serve it. */
  resolve(name: string): AdapterEntry | undefined {
    const raw = this.raw.get(name);
    if (raw) return { kind: 'raw', name, adapter: raw };
    return this.current?.adapters.get(name);
  }

  /**
   * Reads every bundle of the set, checks it (revision, digest, modules against the base model,
   * adapter names unique across the set and the raw adapters) and keeps it staged. Loading the
   * active or an already staged revision again is a no-op. Errors name the AdapterCluster and file.
   */
  async load(set: BundleSetRef): Promise<BundleSet> {
    if (!set.revision) throw new BundleLoadError('a bundle set needs a revision');
    const known = this.current?.revision === set.revision ? this.current : this.staged.get(set.revision);
    if (known) return known;
    const bundles: { ref: BundleRef; bundle: JdBundle }[] = [];
    const adapters = new Map<string, AdapterEntry>();
    const seen = new Set<string>();
    for (const ref of set.bundles) {
      if (seen.has(ref.adapterCluster)) throw new BundleLoadError(`bundle set ${short(set.revision)} lists AdapterCluster ${ref.adapterCluster} twice`);
      seen.add(ref.adapterCluster);
      const bundle = await this.readBundle(ref);
      bundles.push({ ref, bundle });
      for (const a of bundle.manifest.adapters) {
        const clash = adapters.get(a.name);
        if (clash?.kind === 'bundle') {
          throw new BundleLoadError(`adapter ${JSON.stringify(a.name)} is in the bundles of both AdapterCluster ${clash.adapterCluster} and ${ref.adapterCluster}; adapter names must be unique across the clusters a LoRAServer serves`);
        }
        if (this.raw.has(a.name)) {
          throw new BundleLoadError(`adapter ${JSON.stringify(a.name)} of AdapterCluster ${ref.adapterCluster} has the name of one of the LoRAServer's raw adapters; adapter names must be unique`);
        }
        adapters.set(a.name, { kind: 'bundle', name: a.name, adapterCluster: ref.adapterCluster, bundle });
      }
    }
    const loaded: BundleSet = { revision: set.revision, bundles, adapters };
    this.staged.set(set.revision, loaded);
    // The oldest staged revisions go first: only the newest few can still be activated.
    while (this.staged.size > MAX_STAGED) this.staged.delete(this.staged.keys().next().value as string);
    return loaded;
  }

  /** Serves a loaded revision from now on; the previous one is dropped. */
  activate(revision: string): BundleSet {
    if (this.current?.revision === revision) return this.current;
    const next = this.staged.get(revision);
    if (!next) {
      const staged = this.stagedRevisions.map(short);
      throw new BundleLoadError(`revision ${short(revision)} is not loaded: load it before activating it (loaded: ${staged.length > 0 ? staged.join(', ') : 'none'})`);
    }
    this.staged.delete(revision);
    this.current = next;
    return next;
  }

  private async readBundle(ref: BundleRef): Promise<JdBundle> {
    const where = `bundle of AdapterCluster ${ref.adapterCluster} at ${ref.uri}`;
    if (ref.sha256) {
      const file = join(ref.uri, JD_WEIGHTS);
      const actual = await sha256File(file).catch((err: Error) => {
        throw new BundleLoadError(`${where}: cannot read ${file}: ${err.message}`, { cause: err });
      });
      if (actual !== ref.sha256.toLowerCase()) {
        throw new BundleLoadError(`${where}: ${JD_WEIGHTS} has sha256 ${actual}, expected ${ref.sha256} (the AdapterCluster's bundleDigest); refusing a changed or partly written bundle`);
      }
    }
    let bundle: JdBundle;
    try {
      bundle = await readJdBundle(ref.uri);
    } catch (err) {
      throw new BundleLoadError(`${where}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    if (ref.revision && bundle.manifest.revision !== ref.revision) {
      throw new BundleLoadError(`${where}: the manifest says revision ${short(bundle.manifest.revision)}, expected ${short(ref.revision)}`);
    }
    for (const mod of bundle.manifest.modules) {
      const shape = this.linearShapes.get(mod.name);
      if (!shape) {
        throw new BundleLoadError(`${where}: module ${mod.name} is not a linear layer of the base model (${this.base.modelType}, ${this.base.numHiddenLayers} layers)`);
      }
      if (shape[0] !== mod.outFeatures || shape[1] !== mod.inFeatures) {
        throw new BundleLoadError(`${where}: module ${mod.name} is [${mod.outFeatures}, ${mod.inFeatures}] in the bundle, but [${shape[0]}, ${shape[1]}] in the base model`);
      }
    }
    return bundle;
  }
}

function short(revision: string): string {
  return revision.slice(0, 12);
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
