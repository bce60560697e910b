// MatMul throughput through the graph builder and session: a sanity check that the ONNX path
// reaches MLAS speed (~100 GFLOP/s on the 2-core development machine). Not a timed test.
// Run: npx tsx bench/kernels-matmul.ts
import * as nn from '../worker/onnx/index.js';
import { SessionCache } from '../worker/onnx/session.js';

const sizes: [number, number, number][] = [
  [512, 512, 512],
  [1024, 1024, 1024],
  [2048, 2048, 2048],
  [2048, 512, 2048],
];

async function main(): Promise<void> {
  const cache = new SessionCache();
  const rows: string[] = [];
  let best = 0;
  for (const [m, k, n] of sizes) {
    const g = new nn.Graph(`matmul-${m}x${k}x${n}`);
    const a = g.input('a', 'float32', [m, k]);
    const b = g.input('b', 'float32', [k, n]);
    g.output(nn.matmul(a, b), 'c');
    const session = await cache.forGraph(g);
    const feeds = {
      a: nn.tensor('float32', [m, k], Float32Array.from({ length: m * k }, (_, i) => ((i * 7) % 13) / 13)),
      b: nn.tensor('float32', [k, n], Float32Array.from({ length: k * n }, (_, i) => ((i * 5) % 11) / 11)),
    };
    await session.run(feeds); // warm-up: first run allocates and packs
    const flops = 2 * m * k * n;
    const iters = Math.max(3, Math.min(50, Math.round(2e10 / flops)));
    const times: number[] = [];
    for (let i = 0; i < iters; i++) {
      const t0 = process.hrtime.bigint();
      await session.run(feeds);
      times.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    times.sort((x, y) => x - y);
    const median = times[Math.floor(times.length / 2)] as number;
    const gflops = flops / median / 1e9;
    best = Math.max(best, gflops);
    rows.push(`${`${m}×${k}×${n}`.padEnd(16)} ${String(iters).padStart(5)} ${(median * 1e3).toFixed(2).padStart(10)} ${gflops.toFixed(1).padStart(9)}`);
  }
  await cache.dispose();
  console.log(`${'shape (M×K×N)'.padEnd(16)} ${'runs'.padStart(5)} ${'median ms'.padStart(10)} ${'GFLOP/s'.padStart(9)}`);
  for (const r of rows) console.log(r);
  console.log(`RESULT kernels-matmul best=${best.toFixed(1)} GFLOP/s (target ~100 on 2 cores)`);
}

await main();
