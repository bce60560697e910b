// The local control plane and process node behave like a real cluster for real clients.
import assert from 'node:assert/strict';
import { get } from 'node:http';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { waitFor } from '../cluster/probe.js';
import { session } from '../cluster/session.js';
import { LocalCluster } from '../cluster/local-cluster.js';
import { clients, deleteNamespace, freshNamespace, isReady, podsOf, waitForPod } from './helpers.js';

const NODE_IMAGE = 'node:20-bookworm-slim';

function httpText(url: string): Promise<string> {
  return new Promise((resolveText, reject) => {
    get(url, { timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolveText(body));
    }).on('error', reject);
  });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('the local cluster', function () {
  let ns: string;

  before(async () => {
    ns = await freshNamespace('cluster');
  });
  after(async () => {
    await deleteNamespace(ns);
  });

  it('registers a Ready node with nvidia.com/gpu capacity', async function () {
    if (session().kind !== 'local') this.skip();
    const node = await clients().core.readNode({ name: session().nodeName ?? '' });
    assert.equal(node.status?.capacity?.['nvidia.com/gpu'], '2');
    assert.equal(node.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
    const lease = await session().kubeConfig.makeApiClient((await import('@kubernetes/client-node')).CoordinationV1Api)
      .readNamespacedLease({ name: session().nodeName ?? '', namespace: 'kube-node-lease' });
    assert.equal(lease.spec?.holderIdentity, session().nodeName);
  });

  it('completes a Job whose pod runs a node script, and its logs are retrievable', async () => {
    const job = {
      apiVersion: 'batch/v1', kind: 'Job',
      metadata: { name: 'hello', namespace: ns },
      spec: {
        backoffLimit: 0,
        template: {
          spec: {
            restartPolicy: 'Never',
            containers: [{ name: 'main', image: NODE_IMAGE, command: ['node', '-e', 'console.log("sum=" + [1,2,3].reduce((a,b)=>a+b)); console.log("pod=" + process.env.POD_NAME)'],
              env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }] }],
          },
        },
      },
    };
    const applied = await session().kubectl(['apply', '-f', '-'], { input: JSON.stringify(job) });
    assert.equal(applied.code, 0, applied.stderr);
    const waited = await session().kubectl(['wait', '-n', ns, '--for=condition=Complete', 'job/hello', '--timeout=90s']);
    assert.equal(waited.code, 0, waited.stderr);
    const [pod] = await podsOf(ns, 'job-name=hello');
    assert.ok(pod, 'the Job created a pod');
    assert.equal(pod.status?.phase, 'Succeeded');
    assert.equal(pod.status?.containerStatuses?.[0]?.state?.terminated?.exitCode, 0);
    const logs = await session().podLogs(ns, pod.metadata?.name ?? '');
    assert.match(logs, /sum=6/);
    assert.match(logs, new RegExp(`pod=${pod.metadata?.name}`));
    const viaKubectl = await session().kubectl(['logs', '-n', ns, pod.metadata?.name ?? '']);
    assert.equal(viaKubectl.code, 0, viaKubectl.stderr);
    assert.match(viaKubectl.stdout, /sum=6/);
  });

  it('scales a Deployment to 3 ready pods with distinct pod IPs reachable through their Service name, and deleting it removes the processes', async function () {
    const server = 'require("http").createServer((q,s)=>s.end(process.env.POD_NAME+" "+process.env.POD_IP)).listen(8080, process.env.POD_IP)';
    const deployment = {
      apiVersion: 'apps/v1', kind: 'Deployment',
      metadata: { name: 'web', namespace: ns },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: 'web' } },
        template: {
          metadata: { labels: { app: 'web' } },
          spec: {
            terminationGracePeriodSeconds: 5,
            containers: [{
              name: 'web', image: NODE_IMAGE, command: ['node', '-e', server], ports: [{ name: 'http', containerPort: 8080 }],
              env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
              readinessProbe: { httpGet: { path: '/', port: 'http' }, periodSeconds: 1 },
            }],
          },
        },
      },
    };
    assert.equal((await session().kubectl(['apply', '-f', '-'], { input: JSON.stringify(deployment) })).code, 0);
    const scaled = await session().kubectl(['scale', '-n', ns, 'deployment/web', '--replicas=3']);
    assert.equal(scaled.code, 0, scaled.stderr);
    const rolled = await session().kubectl(['rollout', 'status', '-n', ns, 'deployment/web', '--timeout=90s']);
    assert.equal(rolled.code, 0, rolled.stderr);
    const pods = (await podsOf(ns, 'app=web')).filter(isReady);
    assert.equal(pods.length, 3);
    const ips = pods.map((p) => p.status?.podIP ?? '');
    assert.equal(new Set(ips).size, 3, `pod IPs are distinct: ${ips.join(', ')}`);
    if (session().kind !== 'local') return;
    for (const pod of pods) {
      assert.match(pod.status?.podIP ?? '', /^127\./);
      assert.equal(await httpText(`http://${pod.status?.podIP}:8080/`), `${pod.metadata?.name} ${pod.status?.podIP}`);
    }
    const pids = pods.map((p) => Number((p.status?.containerStatuses?.[0]?.containerID ?? '').replace('process://', '')));
    assert.ok(pids.every((pid) => pid > 0 && processAlive(pid)));

    // Service names resolve to a ready endpoint's pod IP inside pods (the process node's /etc/hosts).
    await clients().core.createNamespacedService({ namespace: ns, body: { metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ port: 8080, targetPort: 'http' }] } } });
    await clients().core.createNamespacedPod({ namespace: ns, body: { metadata: { name: 'client' }, spec: { restartPolicy: 'Never', containers: [{
      name: 'main', image: NODE_IMAGE, command: ['node', '-e', `fetch("http://web.${ns}.svc:8080/").then((r) => r.text()).then((t) => console.log("answer=" + t))`],
    }] } } });
    await waitForPod(ns, 'client', 'to succeed', (p) => p.status?.phase === 'Succeeded', 30_000);
    assert.match(await session().podLogs(ns, 'client'), /answer=web-/);

    assert.equal((await session().kubectl(['delete', '-n', ns, 'deployment/web', '--wait=true'])).code, 0);
    await waitFor('the Deployment\'s pods to be garbage-collected', async () => (await podsOf(ns, 'app=web')).length === 0, 60_000);
    await waitFor('the pod processes to exit', async () => pids.every((pid) => !processAlive(pid)), 15_000);
    for (const ip of ips) await assert.rejects(httpText(`http://${ip}:8080/`));
  });

  it('mounts secrets, configmaps, downward API, emptyDir, claims and a pod-bound projected token', async function () {
    const { core } = clients();
    await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 's' }, stringData: { password: 'hunter2' } } });
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'c' }, data: { 'config.yaml': 'rank: 8\n' } } });
    await core.createNamespacedPersistentVolumeClaim({ namespace: ns, body: { metadata: { name: 'models' }, spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } } } });
    const script = [
      'const fs=require("fs");',
      'const r=(p)=>fs.readFileSync(p,"utf8");',
      'fs.writeFileSync("/models/out.txt", [r("/etc/s/password"), r("/etc/c/config.yaml").trim(), r("/etc/info/name"), r("/var/run/secrets/tessera/token").split(".").length, process.env.PASSWORD].join("|"));',
      'fs.writeFileSync("/scratch/x","ok");',
      'console.log(r("/scratch/x"));',
    ].join('');
    const pod = {
      apiVersion: 'v1', kind: 'Pod',
      metadata: { name: 'volumes', namespace: ns },
      spec: {
        restartPolicy: 'Never',
        containers: [{
          name: 'main', image: NODE_IMAGE, command: ['node', '-e', script],
          env: [{ name: 'PASSWORD', valueFrom: { secretKeyRef: { name: 's', key: 'password' } } }],
          volumeMounts: [
            { name: 's', mountPath: '/etc/s', readOnly: true }, { name: 'c', mountPath: '/etc/c' },
            { name: 'info', mountPath: '/etc/info' }, { name: 'scratch', mountPath: '/scratch' },
            { name: 'models', mountPath: '/models' }, { name: 'token', mountPath: '/var/run/secrets/tessera' },
          ],
        }],
        volumes: [
          { name: 's', secret: { secretName: 's' } }, { name: 'c', configMap: { name: 'c' } },
          { name: 'info', downwardAPI: { items: [{ path: 'name', fieldRef: { fieldPath: 'metadata.name' } }] } },
          { name: 'scratch', emptyDir: {} }, { name: 'models', persistentVolumeClaim: { claimName: 'models' } },
          { name: 'token', projected: { sources: [{ serviceAccountToken: { audience: 'tessera.dev', expirationSeconds: 600, path: 'token' } }] } },
        ],
      },
    };
    await core.createNamespacedPod({ namespace: ns, body: pod });
    const done = await waitForPod(ns, 'volumes', 'to finish', (p) => ['Succeeded', 'Failed'].includes(p.status?.phase ?? ''), 90_000);
    assert.equal(done.status?.phase, 'Succeeded', JSON.stringify(done.status?.containerStatuses?.[0]?.state));
    if (!(session() instanceof LocalCluster)) return;
    const cluster = session() as LocalCluster;
    const out = await readFile(`${cluster.node.claimFolder(ns, 'models')}/out.txt`, 'utf8');
    assert.equal(out, 'hunter2|rank: 8|volumes|3|hunter2');
    assert.equal(existsSync('/etc/s/password'), false, 'mounts stay inside the pod\'s mount namespace');
  });

  it('validates a projected token through TokenReview as bound to its pod and audience', async function () {
    const { core } = clients();
    const pod = {
      apiVersion: 'v1', kind: 'Pod', metadata: { name: 'token-printer', namespace: ns },
      spec: {
        restartPolicy: 'Never',
        containers: [{ name: 'main', image: NODE_IMAGE, command: ['node', '-e', 'process.stdout.write(require("fs").readFileSync("/var/run/secrets/tessera/token","utf8"))'],
          volumeMounts: [{ name: 'token', mountPath: '/var/run/secrets/tessera' }] }],
        volumes: [{ name: 'token', projected: { sources: [{ serviceAccountToken: { audience: 'tessera.dev', expirationSeconds: 600, path: 'token' } }] } }],
      },
    };
    await core.createNamespacedPod({ namespace: ns, body: pod });
    await waitForPod(ns, 'token-printer', 'to succeed', (p) => p.status?.phase === 'Succeeded', 60_000);
    const token = (await session().podLogs(ns, 'token-printer')).trim();
    const { AuthenticationV1Api } = await import('@kubernetes/client-node');
    const auth = session().kubeConfig.makeApiClient(AuthenticationV1Api);
    const review = await auth.createTokenReview({ body: { spec: { token, audiences: ['tessera.dev'] } } });
    assert.equal(review.status?.authenticated, true, review.status?.error);
    assert.deepEqual(review.status?.user?.extra?.['authentication.kubernetes.io/pod-name'], ['token-printer']);
    const wrong = await auth.createTokenReview({ body: { spec: { token, audiences: ['someone-else'] } } });
    assert.notEqual(wrong.status?.authenticated, true, 'a token for tessera.dev is not accepted for another audience');
  });

  it('reports a failing container\'s exit code and retries a Job per backoffLimit', async () => {
    const job = {
      apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'fails', namespace: ns },
      spec: { backoffLimit: 1, template: { spec: { restartPolicy: 'Never', containers: [{ name: 'main', image: NODE_IMAGE, command: ['node', '-e', 'console.error("boom"); process.exit(3)'] }] } } },
    };
    assert.equal((await session().kubectl(['apply', '-f', '-'], { input: JSON.stringify(job) })).code, 0);
    const waited = await session().kubectl(['wait', '-n', ns, '--for=condition=Failed', 'job/fails', '--timeout=120s']);
    assert.equal(waited.code, 0, waited.stderr);
    const pods = await podsOf(ns, 'job-name=fails');
    assert.equal(pods.length, 2, 'one pod plus one retry');
    for (const pod of pods) {
      assert.equal(pod.status?.phase, 'Failed');
      assert.equal(pod.status?.containerStatuses?.[0]?.state?.terminated?.exitCode, 3);
    }
  });

  it('restarts a crashing container under restartPolicy OnFailure and counts the restarts', async () => {
    const { core } = clients();
    await core.createNamespacedPod({ namespace: ns, body: {
      metadata: { name: 'flaky', namespace: ns },
      spec: { restartPolicy: 'OnFailure', containers: [{ name: 'main', image: NODE_IMAGE, command: ['node', '-e', 'const f="/tmp/tessera-flaky-"+process.env.UID_;const fs=require("fs");if(!fs.existsSync(f)){fs.writeFileSync(f,"1");process.exit(1)}fs.rmSync(f)'],
        env: [{ name: 'UID_', valueFrom: { fieldRef: { fieldPath: 'metadata.uid' } } }] }] },
    } });
    const pod = await waitForPod(ns, 'flaky', 'to succeed after a restart', (p) => p.status?.phase === 'Succeeded', 60_000);
    assert.equal(pod.status?.containerStatuses?.[0]?.restartCount, 1);
    assert.equal(pod.status?.containerStatuses?.[0]?.lastState?.terminated?.exitCode, 1);
  });

  it('fails a pod whose image it cannot run, naming the image', async function () {
    if (session().kind !== 'local') this.skip();
    const { core } = clients();
    await core.createNamespacedPod({ namespace: ns, body: { metadata: { name: 'nocmd', namespace: ns }, spec: { restartPolicy: 'Never', containers: [{ name: 'main', image: 'registry.example/app:1' }] } } });
    const pod = await waitForPod(ns, 'nocmd', 'to fail', (p) => p.status?.phase === 'Failed');
    assert.equal(pod.status?.reason, 'UnsupportedImage');
    assert.match(pod.status?.message ?? '', /registry\.example\/app:1/);
  });

  it('keeps a pod that asks for more GPUs than the node has Pending as unschedulable', async () => {
    const { core } = clients();
    await core.createNamespacedPod({ namespace: ns, body: { metadata: { name: 'greedy', namespace: ns }, spec: { containers: [{ name: 'main', image: NODE_IMAGE, command: ['node', '-e', '0'], resources: { limits: { 'nvidia.com/gpu': '3' } } }] } } });
    const pod = await waitForPod(ns, 'greedy', 'to be marked unschedulable', (p) => p.status?.conditions?.some((c) => c.type === 'PodScheduled' && c.reason === 'Unschedulable') ?? false);
    assert.match(pod.status?.conditions?.find((c) => c.type === 'PodScheduled')?.message ?? '', /nvidia\.com\/gpu/);
  });
});
