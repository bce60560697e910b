// The process node's kubelet duties that need a closer look than cluster.test.ts gives them:
// termination (SIGTERM, then SIGKILL after the grace period), projected volumes with every
// source, Service names that appear while a pod runs, and the refresh of projected
// ServiceAccount tokens.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuthenticationV1Api, type V1Pod } from '@kubernetes/client-node';
import { NodeApi } from '../cluster/node/api.js';
import { prepareVolumes, tokenRefreshDelayMs } from '../cluster/node/volumes.js';
import { waitFor } from '../cluster/probe.js';
import { session } from '../cluster/session.js';
import type { LocalCluster } from '../cluster/local-cluster.js';
import { FakeClock } from '../unit/fake-clock.js';
import { clients, deleteNamespace, freshNamespace, isReady, waitForPod } from './helpers.js';

const NODE_IMAGE = 'node:20-bookworm-slim';

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const containerPid = (pod: V1Pod): number => Number((pod.status?.containerStatuses?.[0]?.containerID ?? '').replace('process://', ''));

describe('the process node', function () {
  let ns: string;
  let marks: string;

  before(async function () {
    if (session().kind !== 'local') this.skip();
    ns = await freshNamespace('node');
    await clients().core.createNamespacedPersistentVolumeClaim({ namespace: ns, body: { metadata: { name: 'marks' }, spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } } } });
    marks = (session() as LocalCluster).node.claimFolder(ns, 'marks');
  });
  after(async () => {
    if (ns) await deleteNamespace(ns);
  });

  /**
   * A pod whose script reports Ready only once its SIGTERM handler is installed (a marker file
   * behind an exec readiness probe): deleted any earlier, it would die of the default action.
   */
  async function startTerminationPod(name: string, onTerm: string, graceSeconds: number): Promise<V1Pod> {
    const script = `const fs=require("fs");process.on("SIGTERM",()=>{${onTerm}});fs.writeFileSync("/marks/${name}.ready","");setInterval(()=>{},1000)`;
    await clients().core.createNamespacedPod({ namespace: ns, body: { metadata: { name }, spec: {
      terminationGracePeriodSeconds: graceSeconds,
      containers: [{
        name: 'main', image: NODE_IMAGE, command: ['node', '-e', script], volumeMounts: [{ name: 'marks', mountPath: '/marks' }],
        readinessProbe: { exec: { command: ['test', '-f', `/marks/${name}.ready`] }, periodSeconds: 1 },
      }],
      volumes: [{ name: 'marks', persistentVolumeClaim: { claimName: 'marks' } }],
    } } });
    return waitForPod(ns, name, 'to be ready with its SIGTERM handler installed', isReady);
  }

  async function deleteAndTime(name: string, gracePeriodSeconds?: number): Promise<number> {
    const { core } = clients();
    const started = Date.now();
    await core.deleteNamespacedPod({ name, namespace: ns, gracePeriodSeconds });
    await waitFor(`pod ${name} to be deleted`, async () => (await core.listNamespacedPod({ namespace: ns, fieldSelector: `metadata.name=${name}` })).items.length === 0, 60_000, 100);
    return Date.now() - started;
  }

  it('stops a deleted pod with SIGTERM and lets it exit within its grace period', async () => {
    const pod = await startTerminationPod('graceful', 'fs.writeFileSync("/marks/graceful.term","graceful");process.exit(0)', 10);
    await deleteAndTime('graceful');
    assert.equal(await readFile(join(marks, 'graceful.term'), 'utf8'), 'graceful');
    assert.equal(processAlive(containerPid(pod)), false);
  });

  it('SIGKILLs a pod that ignores SIGTERM once the deletion\'s grace period is over', async () => {
    // 30 s in the spec; the delete's 2 s must win, as it does with a kubelet.
    const pod = await startTerminationPod('stubborn', 'fs.writeFileSync("/marks/stubborn.term","ignored")', 30);
    const pid = containerPid(pod);
    assert.ok(pid > 0 && processAlive(pid));
    const took = await deleteAndTime('stubborn', 2);
    assert.equal(await readFile(join(marks, 'stubborn.term'), 'utf8'), 'ignored', 'SIGTERM came first, and the process survived it');
    assert.ok(took >= 1900, `the process had its 2 s of grace (took ${took} ms)`);
    assert.ok(took < 20_000, `the 30 s of the spec were not waited out (took ${took} ms)`);
    assert.equal(processAlive(pid), false, `process ${pid} is dead`);
  });

  it('projects configMap (with items and an optional absent one), downwardAPI and token sources into one volume with its mode', async () => {
    const { core } = clients();
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'settings' }, data: { rank: '8', ignored: 'not projected' } } });
    const script = [
      'const fs=require("fs");const d="/projected";',
      'const files=["cfg/rank","labels","name","uid","token"];',
      'console.log(JSON.stringify({listing:fs.readdirSync(d).sort(),',
      'files:Object.fromEntries(files.map((f)=>[f,fs.readFileSync(d+"/"+f,"utf8")])),',
      'mode:(fs.statSync(d+"/cfg/rank").mode&0o777).toString(8)}));',
    ].join('');
    await core.createNamespacedPod({ namespace: ns, body: {
      metadata: { name: 'projected', labels: { app: 'projected', tier: 'test' } },
      spec: {
        restartPolicy: 'Never',
        containers: [{ name: 'main', image: NODE_IMAGE, command: ['node', '-e', script], volumeMounts: [{ name: 'all', mountPath: '/projected', readOnly: true }] }],
        volumes: [{ name: 'all', projected: { defaultMode: 0o440, sources: [
          { configMap: { name: 'settings', items: [{ key: 'rank', path: 'cfg/rank' }] } },
          { configMap: { name: 'absent', optional: true } },
          { downwardAPI: { items: [
            { path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } },
            { path: 'name', fieldRef: { fieldPath: 'metadata.name' } },
            { path: 'uid', fieldRef: { fieldPath: 'metadata.uid' } },
          ] } },
          { serviceAccountToken: { audience: 'tessera.dev', expirationSeconds: 600, path: 'token' } },
        ] } }],
      },
    } });
    const done = await waitForPod(ns, 'projected', 'to finish', (p) => ['Succeeded', 'Failed'].includes(p.status?.phase ?? ''), 60_000);
    assert.equal(done.status?.phase, 'Succeeded', JSON.stringify(done.status?.containerStatuses?.[0]?.state));
    const seen = JSON.parse((await session().podLogs(ns, 'projected')).trim()) as { listing: string[]; files: Record<string, string>; mode: string };
    assert.deepEqual(seen.listing, ['cfg', 'labels', 'name', 'token', 'uid'], 'only the listed key of the ConfigMap, nothing of the absent optional one');
    assert.equal(seen.files['cfg/rank'], '8');
    assert.equal(seen.files.labels, 'app="projected"\ntier="test"');
    assert.equal(seen.files.name, 'projected');
    assert.equal(seen.files.uid, done.metadata?.uid);
    assert.equal(seen.files.token?.split('.').length, 3, 'a JWT');
    assert.equal(seen.mode, '440', 'defaultMode applies to every projected file');
  });

  it('lets a running pod resolve a Service created after it started', async () => {
    const { core } = clients();
    const server = 'require("http").createServer((q,s)=>s.end("late answer")).listen(8080, process.env.POD_IP)';
    await core.createNamespacedPod({ namespace: ns, body: { metadata: { name: 'late-server', labels: { app: 'late' } }, spec: {
      containers: [{ name: 'main', image: NODE_IMAGE, command: ['node', '-e', server], ports: [{ name: 'http', containerPort: 8080 }],
        readinessProbe: { tcpSocket: { port: 'http' }, periodSeconds: 1 } }],
    } } });
    await waitForPod(ns, 'late-server', 'to be ready', isReady);
    // Asks every 200 ms; the name does not exist yet when it starts.
    const client = `const ask=()=>fetch("http://late.${ns}.svc:8080/").then((r)=>r.text()).then((t)=>{console.log("answer="+t);process.exit(0)},()=>setTimeout(ask,200));ask();setTimeout(()=>process.exit(1),60000)`;
    await core.createNamespacedPod({ namespace: ns, body: { metadata: { name: 'early-client' }, spec: {
      restartPolicy: 'Never', containers: [{ name: 'main', image: NODE_IMAGE, command: ['node', '-e', client] }],
    } } });
    await waitForPod(ns, 'early-client', 'to run', (p) => p.status?.phase === 'Running');
    await core.createNamespacedService({ namespace: ns, body: { metadata: { name: 'late' }, spec: { selector: { app: 'late' }, ports: [{ port: 8080, targetPort: 'http' }] } } });
    const done = await waitForPod(ns, 'early-client', 'to reach the Service', (p) => ['Succeeded', 'Failed'].includes(p.status?.phase ?? ''), 60_000);
    assert.equal(done.status?.phase, 'Succeeded');
    assert.match(await session().podLogs(ns, 'early-client'), /answer=late answer/);
  });

  it('refreshes a projected token at 80 % of its lifetime, and the new token passes TokenReview as bound to the pod', async () => {
    const { core } = clients();
    const api = new NodeApi(session().kubeConfig);
    // A pod no node runs (its selector matches none): TokenRequest binds to it all the same.
    const pod = await core.createNamespacedPod({ namespace: ns, body: {
      metadata: { name: 'token-refresh' },
      spec: {
        nodeSelector: { 'tessera.dev/no-such-node': 'true' },
        // Only the volume under test, so the clock holds its refresh alone.
        automountServiceAccountToken: false,
        containers: [{ name: 'main', image: NODE_IMAGE, command: ['true'] }],
        volumes: [{ name: 'token', projected: { sources: [{ serviceAccountToken: { audience: 'tessera.dev', expirationSeconds: 600, path: 'token' } }] } }],
      },
    } });
    // Why a fake clock: the apiserver mints nothing shorter than 10 minutes, so a real refresh
    // would come after 8 minutes.
    await assert.rejects(api.requestToken(pod, 'tessera.dev', 60), /10 minutes|less than/);

    const clock = new FakeClock();
    const stops: (() => void)[] = [];
    const podDir = await mkdtemp(join(tmpdir(), 'tessera-token-'));
    try {
      const volumes = await prepareVolumes({
        api, pod, podDir, podIP: '127.0.0.254', hostIP: '127.0.0.1', clock,
        claimPath: () => Promise.reject(new Error('no claims here')),
        onStop: (cancel) => stops.push(cancel),
        log: () => undefined,
      });
      const file = join(volumes.get('token') ?? '', 'token');
      const first = await readFile(file, 'utf8');
      assert.deepEqual(clock.pendingDelays(), [tokenRefreshDelayMs(600)]);
      assert.equal(tokenRefreshDelayMs(600), 480_000);

      await clock.advance(479_000);
      assert.equal(await readFile(file, 'utf8'), first, 'no refresh before 80 % of the lifetime');
      await clock.advance(1000);
      await waitFor('the token file to change', async () => (await readFile(file, 'utf8')) !== first, 30_000, 50);
      const second = await readFile(file, 'utf8');
      await waitFor('the next refresh to be scheduled', async () => clock.pending === 1, 10_000, 50);
      assert.deepEqual(clock.pendingDelays(), [480_000]);

      const auth = session().kubeConfig.makeApiClient(AuthenticationV1Api);
      const review = await auth.createTokenReview({ body: { spec: { token: second, audiences: ['tessera.dev'] } } });
      assert.equal(review.status?.authenticated, true, review.status?.error);
      assert.deepEqual(review.status?.user?.extra?.['authentication.kubernetes.io/pod-name'], ['token-refresh']);
      assert.deepEqual(review.status?.user?.extra?.['authentication.kubernetes.io/pod-uid'], [pod.metadata?.uid]);
      assert.equal((await stat(file)).mode & 0o777, 0o644, 'the default mode survives the rewrite');

      for (const stop of stops) stop();
      assert.equal(clock.pending, 0, 'a stopped pod refreshes nothing');
    } finally {
      for (const stop of stops) stop();
      await rm(podDir, { recursive: true, force: true });
    }
  });
});
