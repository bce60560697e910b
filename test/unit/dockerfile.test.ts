// Static checks of the Dockerfile against the repository, so a broken image shows up without a
// Docker engine: what it copies exists (and is not .dockerignored), what it copies from build
// stages is what those stages produce, the entry points are built and on PATH, and it runs as
// a non-root user.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { Copy, DockerfileParser, Entrypoint, Env, From, User, type Instruction } from 'dockerfile-ast';
import ts from 'typescript';
import { parse as parseYaml } from 'yaml';
import { repoRoot } from '../cluster/paths.js';

interface Stage {
  name: string;
  /** Base image with ARG defaults substituted. */
  image: string;
  instructions: Instruction[];
}

interface CopyStep {
  from: string | undefined;
  sources: string[];
  destination: string;
}

const read = (path: string): string => readFileSync(join(repoRoot, path), 'utf8');

function parseStages(): Stage[] {
  const dockerfile = DockerfileParser.parse(read('Dockerfile'));
  const args = new Map<string, string>();
  for (const arg of dockerfile.getInitialARGs()) {
    const property = arg.getProperty();
    if (property) args.set(property.getName(), property.getValue() ?? '');
  }
  const substitute = (text: string): string => text.replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (match, name: string) => args.get(name) ?? match);
  const stages: Stage[] = [];
  for (const instruction of dockerfile.getInstructions()) {
    if (instruction instanceof From) {
      stages.push({ name: instruction.getBuildStage() ?? String(stages.length), image: substitute(instruction.getImage() ?? ''), instructions: [] });
    } else {
      stages.at(-1)?.instructions.push(instruction);
    }
  }
  return stages;
}

const stages = parseStages();
const finalStage = stages.at(-1) as Stage;

function stage(name: string): Stage {
  const found = stages.find((s) => s.name === name);
  assert.ok(found, `the Dockerfile has no stage ${name}: it has ${stages.map((s) => s.name).join(', ')}`);
  return found;
}

const keyword = (s: Stage, word: string): Instruction[] => s.instructions.filter((i) => i.getKeyword() === word);
const workdir = (s: Stage): string => keyword(s, 'WORKDIR').at(-1)?.getArgumentsContent() ?? '/';
const runScript = (s: Stage): string => keyword(s, 'RUN').map((i) => i.getArgumentsContent() ?? '').join('\n');

function copies(s: Stage): CopyStep[] {
  return s.instructions.filter((i): i is Copy => i instanceof Copy).map((copy) => {
    const paths = copy.getArguments().map((a) => a.getValue());
    return { from: copy.getFromFlag()?.getValue() ?? undefined, sources: paths.slice(0, -1), destination: paths.at(-1) ?? '' };
  });
}

/** Stages that are images someone runs: the default (last) target and the gpu target. */
const imageStages = (): Stage[] => [finalStage, stage('gpu')];

const tsconfig = ts.readConfigFile(join(repoRoot, 'tsconfig.json'), ts.sys.readFile);
const outDir = posix.normalize(String((tsconfig.config as { compilerOptions?: { outDir?: string } }).compilerOptions?.outDir ?? ''));
const pkg = JSON.parse(read('package.json')) as { bin: Record<string, string>; scripts: Record<string, string> };

/** .dockerignore semantics that matter here: globs, a leading "/", "!" exceptions, and parents excluding children. */
function dockerignored(path: string): boolean {
  const patterns = read('.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  const segments = posix.normalize(path).replace(/\/$/, '').split('/');
  let ignored = false;
  for (const raw of patterns) {
    const negated = raw.startsWith('!');
    const glob = raw.replace(/^!/, '').replace(/^\/+/, '').replace(/\/+$/, '');
    const pattern = new RegExp(`^${glob.split('**').map((part) => part.split('*').map((lit) => lit.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^/]*')).join('.*')}$`);
    const matches = segments.some((_, i) => pattern.test(segments.slice(0, i + 1).join('/')));
    if (matches) ignored = !negated;
  }
  return ignored;
}

describe('Dockerfile', () => {
  it('is the CPU runtime on node:20-bookworm-slim by default, built on node:20-bookworm', () => {
    assert.equal(finalStage.image, 'node:20-bookworm-slim');
    assert.equal(stage('build').image, 'node:20-bookworm');
    assert.match(runScript(stage('build')), /\bnpm ci\b/);
    assert.match(runScript(stage('build')), /\bnpm run build\b/);
    assert.match(runScript(stage('build')), /\bnpm prune --omit=dev\b/);
  });

  it('copies from the build context only paths that exist in the repository and are not .dockerignored', () => {
    const checked: string[] = [];
    for (const s of stages) {
      for (const step of copies(s).filter((c) => c.from === undefined)) {
        for (const source of step.sources) {
          const path = posix.normalize(source).replace(/\/$/, '');
          // dist/ is the one path the repository holds only after a build; it must then be tsc's outDir.
          const produced = path === outDir && /\btsc\b/.test(pkg.scripts.build ?? '');
          assert.ok(existsSync(join(repoRoot, path)) || produced, `stage ${s.name} copies ${source}, which is not in the repository`);
          assert.ok(!dockerignored(path), `stage ${s.name} copies ${source}, but .dockerignore leaves it out of the build context`);
          checked.push(path);
        }
      }
    }
    for (const needed of ['package.json', 'package-lock.json', '.npmrc', 'tsconfig.json', 'operator', 'worker', 'proto', 'crds']) {
      assert.ok(checked.includes(needed), `no stage copies ${needed} from the build context`);
    }
  });

  it('copies from its own stages only what those stages produce', () => {
    for (const s of stages) {
      for (const step of copies(s).filter((c) => c.from !== undefined)) {
        const producer = stages.find((p) => p.name === step.from);
        assert.ok(producer, `stage ${s.name} copies --from=${step.from}, which is not a stage`);
        // A bare image stage (FROM only) is a source of its own files, such as the node binary.
        if (producer.instructions.length === 0) continue;
        for (const source of step.sources) {
          const relative = posix.relative(workdir(producer), posix.normalize(source)).replace(/\/$/, '');
          const script = runScript(producer);
          if (relative === 'node_modules') {
            assert.match(script, /\bnpm ci\b/, `stage ${producer.name} never runs npm ci, yet ${s.name} copies its node_modules`);
          } else if (relative === outDir) {
            assert.match(script, /\bnpm run build\b/, `stage ${producer.name} never builds, yet ${s.name} copies its ${outDir}/`);
            assert.match(pkg.scripts.build ?? '', /\btsc -p tsconfig\.json\b/, 'the build script should compile tsconfig.json, whose outDir the image copies');
          } else {
            assert.fail(`stage ${s.name} copies ${source} from ${producer.name}, which that stage does not produce`);
          }
        }
      }
    }
  });

  it('builds every entry point named in package.json bin from a source file that exists', () => {
    assert.deepEqual(Object.keys(pkg.bin).sort(), ['tessera-operator', 'tessera-worker']);
    for (const [name, built] of Object.entries(pkg.bin)) {
      assert.ok(built.startsWith(`${outDir}/`), `bin ${name} points at ${built}, outside tsc's outDir ${outDir}/`);
      const source = built.slice(outDir.length + 1).replace(/\.js$/, '.ts');
      assert.ok(existsSync(join(repoRoot, source)), `bin ${name} is built from ${source}, which does not exist`);
      assert.equal(read(source).split('\n')[0], '#!/usr/bin/env node', `${source} must start with a node shebang to run as ${name}`);
      // A stale or partial dist/ is only checked when there is one.
      if (existsSync(join(repoRoot, outDir))) assert.ok(existsSync(join(repoRoot, built)), `${outDir}/ exists but lacks ${built}: run npm run build`);
      assert.match(runScript(stage('build')), new RegExp(`chmod [0-7]+ [^\\n]*${built.replace(/\./g, '\\.')}`), `the build stage must make ${built} executable`);
    }
  });

  it('puts both entry points on PATH in every image and starts one of them', () => {
    for (const s of imageStages()) {
      for (const [name, built] of Object.entries(pkg.bin)) {
        const target = posix.join(workdir(s), built);
        assert.ok(runScript(s).includes(`ln -s ${target} /usr/local/bin/${name}`), `stage ${s.name} does not link /usr/local/bin/${name} to ${target}`);
      }
      assert.ok(copies(s).some((c) => c.sources.includes('package.json')), `stage ${s.name} needs package.json for "type": "module"`);
      const entrypoint = s.instructions.filter((i): i is Entrypoint => i instanceof Entrypoint).at(-1);
      const command = entrypoint?.getJSONStrings().map((a) => a.getJSONValue()) ?? [];
      assert.ok(command[0] !== undefined && command[0] in pkg.bin, `stage ${s.name} should start tessera-operator or tessera-worker, not ${JSON.stringify(command)}`);
    }
  });

  it('runs both images as the non-root user the Helm chart expects', () => {
    const values = parseYaml(read('charts/tessera/values.yaml')) as { securityContext: { runAsUser: number; runAsGroup: number } };
    for (const s of imageStages()) {
      const user = s.instructions.filter((i): i is User => i instanceof User).at(-1)?.getArgumentsContent() ?? 'root';
      assert.match(user, /^\d+(:\d+)?$/, `stage ${s.name} runs as ${user}: a numeric uid lets runAsNonRoot verify it`);
      const [uid, gid] = user.split(':').map(Number);
      assert.notEqual(uid, 0, `stage ${s.name} runs as root`);
      assert.equal(uid, values.securityContext.runAsUser, `stage ${s.name} runs as uid ${uid}, the chart as ${values.securityContext.runAsUser}`);
      if (gid !== undefined) assert.equal(gid, values.securityContext.runAsGroup);
      const env = s.instructions.filter((i): i is Env => i instanceof Env).flatMap((e) => e.getProperties());
      assert.ok(env.some((p) => p.getName() === 'NODE_ENV' && p.getValue() === 'production'), `stage ${s.name} should set NODE_ENV=production`);
    }
  });

  it('installs the CUDA 12 provider of onnxruntime-node in the gpu target, overriding .npmrc', () => {
    assert.match(read('.npmrc'), /^onnxruntime-node-install=skip$/m, 'the CPU build relies on .npmrc skipping the CUDA download');
    const modulesFrom = (s: Stage): Stage => stage(copies(s).find((c) => c.sources.some((src) => /node_modules\/?$/.test(src)))?.from ?? s.name);

    const gpuDeps = modulesFrom(stage('gpu'));
    const order = gpuDeps.instructions;
    const setIndex = order.findIndex((i) => i instanceof Env && i.getProperties().some((p) => p.getName() === 'ONNXRUNTIME_NODE_INSTALL' && p.getValue() === 'cuda12'));
    const ciIndex = order.findIndex((i) => i.getKeyword() === 'RUN' && /\bnpm ci\b/.test(i.getArgumentsContent() ?? ''));
    assert.ok(setIndex >= 0, `stage ${gpuDeps.name} (node_modules of the gpu image) never sets ONNXRUNTIME_NODE_INSTALL=cuda12`);
    assert.ok(ciIndex > setIndex, `stage ${gpuDeps.name} must set ONNXRUNTIME_NODE_INSTALL before npm ci`);
    assert.match(runScript(gpuDeps), /test -f "?\$ORT_BIN\/libonnxruntime_providers_cuda\.so/, 'the gpu build should fail when the CUDA provider was not fetched');

    const cpuDeps = modulesFrom(finalStage);
    const cpuEnv = cpuDeps.instructions.filter((i): i is Env => i instanceof Env).flatMap((e) => e.getProperties());
    assert.ok(!cpuEnv.some((p) => p.getName() === 'ONNXRUNTIME_NODE_INSTALL'), 'the CPU image should not download CUDA binaries');
  });
});
