// npm run bench -- <suite> [args]: runs one benchmark suite, each a script that prints a table and one RESULT line.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const SUITES: Record<string, string> = {
  kernels: 'kernels.ts',
  'kernels-matmul': 'kernels-matmul.ts',
  'kernels-train': 'kernels-train.ts',
  jd: 'jd.ts',
  'jd-tasks': 'jd-tasks.ts',
  operator: 'operator.ts',
  serve: 'serve.ts',
};

const [suite, ...args] = process.argv.slice(2);
const available = Object.entries(SUITES).filter(([, file]) => existsSync(join(here, file))).map(([name]) => name);
if (!suite || !SUITES[suite] || !existsSync(join(here, SUITES[suite]))) {
  console.error(`unknown benchmark suite ${JSON.stringify(suite ?? '')}: expected one of ${available.join(', ')}`);
  process.exit(2);
}
const result = spawnSync(process.execPath, ['--import', 'tsx', join(here, SUITES[suite]), ...args], { stdio: 'inherit' });
process.exit(result.status ?? 1);
