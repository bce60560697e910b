// `--adapter BUNDLE_DIR#NAME`: one adapter of a JD bundle, materialized as equivalent LoRA factors,
// so eval measures exactly what serving the compressed adapter computes.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { validateAdapterForBase } from '../formats/peft.js';
import { JD_MANIFEST, materializeAdapter, readJdBundle } from '../formats/jd-bundle.js';
import type { AdapterSource } from './eval.js';
import { adapterToLora } from './load-model.js';

function split(spec: string): { dir: string; name: string } | undefined {
  const hash = spec.lastIndexOf('#');
  if (hash <= 0 || hash === spec.length - 1) return undefined;
  return { dir: spec.slice(0, hash), name: spec.slice(hash + 1) };
}

export const JD_BUNDLE_SOURCE: AdapterSource = {
  describe: 'a JD bundle directory and adapter name (BUNDLE_DIR#NAME)',
  matches: async (spec) => {
    const parts = split(spec);
    return parts !== undefined && (await stat(join(parts.dir, JD_MANIFEST)).catch(() => undefined)) !== undefined;
  },
  load: async (spec, model) => {
    const { dir, name } = split(spec) as { dir: string; name: string };
    const adapter = materializeAdapter(await readJdBundle(dir), name);
    validateAdapterForBase(adapter, model.config, `${dir}#${name}`);
    return adapterToLora(adapter);
  },
};
