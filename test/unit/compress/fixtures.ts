// PEFT adapter directories on disk for the compress entry and bundle tests.
import { loraConfig, saveLoraAdapter } from '../../../worker/formats/peft.js';
import { makeTensor } from '../../../worker/formats/tensor.js';
import { type SlotFactors } from '../../../worker/compress/slot.js';
import { join } from 'node:path';

export const MODULES = [
  { name: 'model.layers.0.self_attn.q_proj', out: 16, in: 16 },
  { name: 'model.layers.0.self_attn.v_proj', out: 8, in: 16 },
] as const;

/** Writes `count` adapters a0, a1, … under `root`; `factors(module, i)` gives each module's factors. */
export async function writeAdapters(root: string, count: number, factors: (module: (typeof MODULES)[number], i: number) => SlotFactors): Promise<Array<{ name: string; dir: string }>> {
  const out: Array<{ name: string; dir: string }> = [];
  for (let i = 0; i < count; i++) {
    const first = factors(MODULES[0], i);
    const config = loraConfig({ r: first.rank, loraAlpha: first.rank * first.scaling, targetModules: ['q_proj', 'v_proj'], baseModelNameOrPath: 'tiny-llama' });
    const modules = new Map(
      MODULES.map((mod) => {
        const f = factors(mod, i);
        // Shapes come from the factors, so a test can write an adapter that does not fit the others.
        return [mod.name, { name: mod.name, A: makeTensor('F32', [f.rank, f.A.length / f.rank], f.A), B: makeTensor('F32', [f.B.length / f.rank, f.rank], f.B), rank: f.rank, alpha: f.rank * f.scaling, scaling: f.scaling }];
      }),
    );
    const dir = join(root, `a${i}`);
    await saveLoraAdapter(dir, { config, modules });
    out.push({ name: `a${i}`, dir });
  }
  return out;
}
