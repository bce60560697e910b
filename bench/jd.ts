// JD compression wall time against a NumPy implementation of the same algorithms
// (bench/reference/jd_numpy.py) on the same synthetic LoRA adapters, passed through a
// safetensors file. Shapes: one module slot of d = 512 (m = k = 512), adapters of rank 16,
// 10 iterations, no early stop. Not a timed test.
// Run: npx tsx bench/jd.ts [--quick]
import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jdDiag } from '../worker/compress/jd-diag.js';
import { jdFull } from '../worker/compress/jd-full.js';
import { JdKernels } from '../worker/compress/kernels.js';
import { countParameters } from '../worker/compress/params.js';
import { gaussianArray } from '../worker/compress/random.js';
import { packSlot, type SlotFactors } from '../worker/compress/slot.js';
import { makeTensor, type Tensor } from '../worker/formats/tensor.js';
import { writeSafetensors } from '../worker/formats/safetensors.js';

const here = dirname(fileURLToPath(import.meta.url));
const quick = process.argv.includes('--quick');
const D = 512;
const R0 = 16;
const ITERATIONS = 10;
const counts = quick ? [10, 100] : [10, 100, 500];
const ranks = quick ? [16] : [16, 64];
const methods = ['jd-full', 'jd-diag'] as const;

function adapters(n: number): SlotFactors[] {
  return Array.from({ length: n }, (_, i) => ({ A: gaussianArray(R0 * D, 2 * i + 1, 1 / Math.sqrt(D)), B: gaussianArray(D * R0, 2 * i + 2, 0.02), rank: R0, scaling: 2 }));
}

interface NumpyRun {
  seconds: number;
  meanError: number;
  blas: string;
}

function numpy(file: string, method: string, rank: number): NumpyRun | string {
  const res = spawnSync('python3', [join(here, 'reference', 'jd_numpy.py'), file, method, String(rank), String(ITERATIONS)], { encoding: 'utf8' });
  if (res.error) return `unavailable (${res.error.message})`;
  if (res.status !== 0) return `unavailable (${(res.stderr.trim().split('\n').at(-1) ?? 'python3 failed').slice(0, 80)})`;
  return JSON.parse(res.stdout.trim().split('\n').at(-1) as string) as NumpyRun;
}

async function main(): Promise<void> {
  const kernels = new JdKernels();
  const dir = await fsp.mkdtemp(join(tmpdir(), 'tessera-bench-jd-'));
  const rows: string[] = [];
  const speedups: number[] = [];
  let blas = 'unavailable';
  try {
    for (const n of counts) {
      const factors = adapters(n);
      const file = join(dir, `adapters-${n}.safetensors`);
      const tensors: Array<[string, Tensor]> = [['scaling', makeTensor('F32', [n], Float32Array.from(factors, (f) => f.scaling))]];
      factors.forEach((f, i) => tensors.push([`A.${i}`, makeTensor('F32', [R0, D], f.A)], [`B.${i}`, makeTensor('F32', [D, R0], f.B)]));
      await writeSafetensors(file, tensors);
      for (const rank of ranks) {
        for (const method of methods) {
          const run = async (iterations: number): Promise<{ seconds: number; meanError: number }> => {
            const t0 = process.hrtime.bigint();
            const slot = await packSlot(kernels, 'q_proj', D, D, factors);
            const opts = { rank, iterations, tolerance: 0, seed: 0 };
            const res = method === 'jd-full' ? await jdFull(kernels, slot, opts) : await jdDiag(kernels, slot, opts);
            const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
            return { seconds, meanError: res.errors.reduce((a, b) => a + b, 0) / n };
          };
          await run(1); // warm-up: builds and caches this shape's sessions
          const ours = await run(ITERATIONS);
          const np = numpy(file, method, rank);
          const saved = countParameters(method, 1, [{ m: D, k: D, rank, ranks: factors.map((f) => f.rank) }]);
          let npCols = `${'unavailable'.padStart(10)} ${'-'.padStart(8)} ${'-'.padStart(9)}`;
          if (typeof np === 'string') blas = np;
          else {
            blas = np.blas;
            speedups.push(np.seconds / ours.seconds);
            npCols = `${np.seconds.toFixed(3).padStart(10)} ${(np.seconds / ours.seconds).toFixed(2).padStart(8)} ${np.meanError.toFixed(3).padStart(9)}`;
          }
          rows.push(`${String(n).padStart(4)} ${String(rank).padStart(4)} ${method.padEnd(8)} ${ours.seconds.toFixed(3).padStart(10)} ${npCols} ${ours.meanError.toFixed(3).padStart(9)} ${saved.perAdapterSavedRatio.toFixed(2).padStart(5)}/${saved.savedRatio.toFixed(2)}`);
          console.error(rows.at(-1));
        }
      }
    }
  } finally {
    await kernels.dispose();
    await fsp.rm(dir, { recursive: true, force: true });
  }
  console.log(`JD compression, one module slot d=${D} (m=k=${D}), random rank-${R0} adapters, ${ITERATIONS} iterations, float32 on both sides`);
  console.log(`NumPy BLAS: ${blas}; OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE ?? '(unset)'}`);
  console.log(`${'n'.padStart(4)} ${'r'.padStart(4)} ${'method'.padEnd(8)} ${'ours s'.padStart(10)} ${'numpy s'.padStart(10)} ${'speedup'.padStart(8)} ${'np err'.padStart(9)} ${'our err'.padStart(9)} saved (per-adapter/total)`);
  for (const r of rows) console.log(r);
  const geo = speedups.length ? Math.exp(speedups.reduce((a, s) => a + Math.log(s), 0) / speedups.length) : NaN;
  console.log(`RESULT jd speedup_vs_numpy=${speedups.length ? geo.toFixed(2) : 'unavailable'} (geometric mean over ${speedups.length} settings; errors are mean relative Frobenius)`);
}

await main();
