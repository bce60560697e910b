// The Helm chart on the real control plane: it lints, renders objects the apiserver accepts,
// validates its values, and installs an operator whose pod becomes Ready through the chart's
// own probes, then uninstalls cleanly.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { CustomObjectsApi, type V1Container, type V1Deployment, type V1Job } from '@kubernetes/client-node';
import type { AuditEvent } from '../cluster/control-plane.js';
import { LocalCluster } from '../cluster/local-cluster.js';
import { repoRoot } from '../cluster/paths.js';
import { httpGet, waitFor } from '../cluster/probe.js';
import { session } from '../cluster/session.js';
import { clients, deleteNamespace, freshNamespace, isReady, podsOf } from './helpers.js';

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  spec?: Record<string, unknown>;
}

const CHART = join(repoRoot, 'charts', 'tessera');
const RELEASE = 'tessera';
const INSTALL_NAMESPACE = 'tessera-system';
const SELECTOR = 'app.kubernetes.io/name=tessera,app.kubernetes.io/instance=tessera,app.kubernetes.io/component=operator';
// Two Roles: the TLS Secret's and leader election's, both in the release namespace.
const DEFAULT_KINDS = ['ClusterRole', 'ClusterRoleBinding', 'Deployment', 'Role', 'Role', 'RoleBinding', 'RoleBinding', 'Service', 'ServiceAccount'];

const setFlags = (values: Record<string, string>): string[] => Object.entries(values).flatMap(([k, v]) => ['--set', `${k}=${v}`]);

async function template(namespace: string, values: Record<string, string> = {}): Promise<{ yaml: string; objects: K8sObject[] }> {
  const result = await session().helm(['template', RELEASE, CHART, '--namespace', namespace, ...setFlags(values)]);
  assert.equal(result.code, 0, `helm template ${JSON.stringify(values)} failed: ${result.stderr}`);
  const objects = parseAllDocuments(result.stdout).map((d) => d.toJS() as K8sObject | null).filter((o): o is K8sObject => o !== null);
  return { yaml: result.stdout, objects };
}

const kinds = (objects: K8sObject[]): string[] => objects.map((o) => o.kind).sort();

function operatorContainer(objects: K8sObject[]): V1Container {
  const deployment = objects.find((o) => o.kind === 'Deployment') as V1Deployment | undefined;
  const container = deployment?.spec?.template.spec?.containers.find((c) => c.name === 'operator');
  assert.ok(container, 'the chart renders no Deployment with an operator container');
  return container;
}

describe('the Helm chart', () => {
  let dryRunNamespace: string;

  before(async () => {
    dryRunNamespace = await freshNamespace('helm-dry-run');
  });
  after(async () => {
    await deleteNamespace(dryRunNamespace);
  });

  it('passes helm lint, also with --strict and with every optional part enabled', async () => {
    for (const extra of [[], ['--strict'], ['--strict', ...setFlags({ 'tls.mode': 'cert-manager', 'metrics.serviceMonitor.enabled': 'true' })]]) {
      const result = await session().helm(['lint', CHART, ...extra]);
      assert.equal(result.code, 0, `helm lint ${extra.join(' ')}: ${result.stdout}${result.stderr}`);
      assert.match(result.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
    }
  });

  it('ships the same CRDs as crds/', () => {
    const yamlFiles = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort();
    const shipped = yamlFiles(join(CHART, 'crds'));
    assert.deepEqual(shipped, yamlFiles(join(repoRoot, 'crds')));
    assert.deepEqual(shipped, ['tessera.dev_adapterclusters.yaml', 'tessera.dev_loraservers.yaml', 'tessera.dev_sparsefinetunes.yaml']);
    for (const file of shipped) assert.equal(readFileSync(join(CHART, 'crds', file), 'utf8'), readFileSync(join(repoRoot, 'crds', file), 'utf8'), `${file} differs`);
  });

  const accepted: [string, Record<string, string>, string[]][] = [
    ['the default values', {}, DEFAULT_KINDS],
    ['cert-manager mode and the ServiceMonitor off explicitly', { 'tls.mode': 'self-signed', 'metrics.serviceMonitor.enabled': 'false' }, DEFAULT_KINDS],
    ['leader election off', { 'leaderElection.enabled': 'false' }, ['ClusterRole', 'ClusterRoleBinding', 'Deployment', 'Role', 'RoleBinding', 'Service', 'ServiceAccount']],
    ['two replicas, debug logs and a separate worker image', { replicas: '2', logLevel: 'debug', workerImage: 'ghcr.io/tessera-dev/tessera:0.1.0-cuda' }, DEFAULT_KINDS],
  ];
  for (const [what, values, expectedKinds] of accepted) {
    it(`renders objects the real apiserver accepts with ${what}`, async () => {
      const { yaml, objects } = await template(dryRunNamespace, values);
      assert.deepEqual(kinds(objects), expectedKinds);
      const applied = await session().kubectl(['apply', '--dry-run=server', '-f', '-'], { input: yaml });
      assert.equal(applied.code, 0, applied.stderr);
      assert.equal(applied.stdout.trim().split('\n').length, expectedKinds.length, applied.stdout);
    });
  }

  it('passes its values to the operator as flags it understands', async () => {
    const { objects } = await template(dryRunNamespace, { logLevel: 'debug', workerImage: 'registry.example/tessera:dev' });
    const container = operatorContainer(objects);
    assert.deepEqual(container.command, ['tessera-operator']);
    assert.deepEqual(container.args, [
      '--metrics-bind-address=$(POD_IP):8080',
      '--health-probe-bind-address=$(POD_IP):8081',
      '--grpc-bind-address=$(POD_IP):9443',
      '--leader-elect',
      '--log-level=debug',
      '--worker-image=registry.example/tessera:dev',
      '--tls-mode=self-signed',
      '--tls-secret-name=tessera-operator-tls',
      '--service-name=tessera-operator',
    ]);
    assert.equal(container.image, 'ghcr.io/tessera-dev/tessera:0.1.0', 'the tag defaults to appVersion');
    assert.deepEqual(container.env?.find((e) => e.name === 'POD_NAMESPACE')?.valueFrom?.fieldRef?.fieldPath, 'metadata.namespace');
    assert.deepEqual(container.env?.find((e) => e.name === 'POD_IP')?.valueFrom?.fieldRef?.fieldPath, 'status.podIP');
    assert.equal(container.securityContext?.runAsNonRoot, true);
    assert.equal(container.securityContext?.runAsUser, 65532);
    assert.equal(container.securityContext?.readOnlyRootFilesystem, true);
    assert.equal(container.securityContext?.allowPrivilegeEscalation, false);
    assert.deepEqual(container.securityContext?.capabilities?.drop, ['ALL']);
    assert.equal(container.securityContext?.seccompProfile?.type, 'RuntimeDefault');
  });

  it('renders a ServiceMonitor only when metrics.serviceMonitor.enabled, since its CRD may be absent', async () => {
    const { objects: byDefault } = await template(dryRunNamespace);
    assert.ok(!byDefault.some((o) => o.kind === 'ServiceMonitor'));
    const { yaml, objects: enabled } = await template(dryRunNamespace, { 'metrics.serviceMonitor.enabled': 'true' });
    const monitor = enabled.find((o) => o.kind === 'ServiceMonitor');
    assert.ok(monitor, 'no ServiceMonitor rendered');
    assert.equal(monitor.apiVersion, 'monitoring.coreos.com/v1');
    assert.deepEqual((monitor.spec?.endpoints as { port: string }[])[0]?.port, 'metrics');
    // This cluster has no prometheus-operator: exactly why the default is off.
    const applied = await session().kubectl(['apply', '--dry-run=server', '-f', '-'], { input: yaml });
    assert.notEqual(applied.code, 0);
    assert.match(applied.stderr, /ServiceMonitor/);
  });

  it('renders cert-manager Issuers and a Certificate for the operator Service only in cert-manager mode', async () => {
    const { objects: selfSigned } = await template(dryRunNamespace);
    assert.ok(!selfSigned.some((o) => o.apiVersion.startsWith('cert-manager.io/')), 'self-signed mode renders nothing for cert-manager');
    assert.ok(operatorContainer(selfSigned).args?.includes('--tls-mode=self-signed'));

    const { objects } = await template(dryRunNamespace, { 'tls.mode': 'cert-manager' });
    assert.deepEqual(kinds(objects.filter((o) => o.apiVersion === 'cert-manager.io/v1')), ['Certificate', 'Certificate', 'Issuer', 'Issuer']);
    const serving = objects.find((o) => o.kind === 'Certificate' && o.metadata.name === 'tessera-operator-grpc');
    assert.ok(serving, 'no serving Certificate');
    const args = operatorContainer(objects).args ?? [];
    assert.ok(args.includes('--tls-mode=cert-manager'));
    assert.ok(args.includes(`--tls-secret-name=${String(serving.spec?.secretName)}`), 'the operator reads the Secret the Certificate writes');
    assert.ok((serving.spec?.dnsNames as string[]).includes(`tessera-operator.${dryRunNamespace}.svc`));

    const { objects: external } = await template(dryRunNamespace, { 'tls.mode': 'cert-manager', 'tls.certManager.issuerRef.name': 'corp-ca', 'tls.certManager.issuerRef.kind': 'ClusterIssuer' });
    assert.deepEqual(kinds(external.filter((o) => o.apiVersion === 'cert-manager.io/v1')), ['Certificate'], 'an existing issuer needs no bootstrap CA');
  });

  const rejected: [string, string, RegExp][] = [
    ['replicas', '-1', /replicas/],
    ['logLevel', 'loud', /logLevel/],
    ['tls.mode', 'vault', /tls\/mode/],
    ['metrics.port', '70000', /metrics\/port/],
    ['replicaCount', '2', /replicaCount/],
  ];
  for (const [key, value, field] of rejected) {
    it(`rejects ${key}=${value} through values.schema.json, naming the field`, async () => {
      const result = await session().helm(['template', RELEASE, CHART, '--set', `${key}=${value}`]);
      assert.notEqual(result.code, 0, `accepted ${key}=${value}`);
      assert.match(result.stderr, /values don't meet the specifications of the schema/);
      assert.match(result.stderr, field);
    });
  }

  it('refuses several replicas without leader election', async () => {
    const result = await session().helm(['template', RELEASE, CHART, ...setFlags({ replicas: '2', 'leaderElection.enabled': 'false' })]);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /leaderElection/);
  });

  describe('helm install and uninstall', () => {
    let workloadNamespace: string | undefined;
    let data: string | undefined;

    after(async () => {
      if (workloadNamespace) await deleteNamespace(workloadNamespace);
      if (data) rmSync(data, { recursive: true, force: true });
      // Whatever a failed test left behind; both are no-ops after a clean uninstall.
      await session().helm(['uninstall', RELEASE, '--namespace', INSTALL_NAMESPACE, '--wait'], { timeoutMs: 120_000 });
      await deleteNamespace(INSTALL_NAMESPACE);
    });

    it('installs an operator whose pod becomes Ready through the chart probes', async function () {
      this.timeout(240_000);
      // Default ports: the operator binds its pod IP, so even on the process node (pods share the
      // host's network) it collides with nothing else.
      const installed = await session().helm(
        ['install', RELEASE, CHART, '--namespace', INSTALL_NAMESPACE, '--create-namespace', '--wait', '--timeout', '3m'],
        { timeoutMs: 210_000 },
      );
      assert.equal(installed.code, 0, `${installed.stdout}\n${installed.stderr}`);
      assert.match(installed.stdout, /STATUS: deployed/);
      assert.match(installed.stdout, /tessera-operator\.tessera-system\.svc/, 'NOTES.txt names the status hub');

      const pods = await podsOf(INSTALL_NAMESPACE, SELECTOR);
      assert.equal(pods.length, 1, `expected one operator pod, got ${pods.map((p) => p.metadata?.name).join(', ')}`);
      const pod = pods[0]!;
      assert.ok(isReady(pod), `pod ${pod.metadata?.name} is not Ready: ${JSON.stringify(pod.status?.conditions)}`);

      // Ready is not leading: a standby replica is Ready too (it serves the hub), and helm --wait
      // returns as soon as the pod is Ready. So wait for the Lease to be won, then for the
      // controllers' caches, before asserting on either.
      const logs = (): Promise<string> => session().podLogs(INSTALL_NAMESPACE, pod.metadata?.name ?? '', 'operator');
      await waitFor('the single replica to take the Lease and start the controllers', async () => /"msg":"elected leader: starting controllers"/.test(await logs()), 60_000);
      const text = await logs();
      assert.match(text, /"msg":"starting tessera-operator"/);
      assert.match(text, /"leaderElect":true/);
      assert.match(text, /"namespace":"tessera-system"/, 'POD_NAMESPACE reaches the operator');

      if (session().kind === 'local' && pod.status?.podIP) {
        const ip = pod.status.podIP;
        await waitFor('/readyz to answer 200 once the leader\'s caches have synced', async () => (await httpGet(`http://${ip}:8081/readyz`)).status === 200, 60_000);
        const metrics = await httpGet(`http://${ip}:8080/metrics`);
        assert.equal(metrics.status, 200);
        assert.match(metrics.body, /^tessera_build_info\{version="0\.1\.0"\} 1$/m);
      }
    });

    it('reconciles a SparseFineTune as the chart\'s ServiceAccount: its Job appears, its status is written, and nothing is refused', async function () {
      this.timeout(240_000);
      const namespace = await freshNamespace('helm-rbac');
      workloadNamespace = namespace;
      const folder = mkdtempSync(join(tmpdir(), 'tessera-rbac-'));
      data = folder;
      for (const dir of ['models/tiny', 'data', 'out']) mkdirSync(join(folder, dir), { recursive: true });
      // A setting that is not built yet (a base model over https): the worker starts, fails at once naming it, and
      // reports that through the status hub, so the hub's calls (TokenReview, owner lookups, status)
      // run as the operator too.
      const sft = {
        apiVersion: 'tessera.dev/v1alpha1', kind: 'SparseFineTune', metadata: { name: 'rbac', namespace },
        spec: {
          baseModel: { uri: 'https://models.example/tiny', sha256: 'a'.repeat(64) }, dataset: { uri: `file://${folder}/data/train.jsonl` },
          method: 'lora', adapter: { rank: 4 }, training: { steps: 10 },
          output: { uri: `file://${folder}/out/rbac`, mergedModel: false, adapter: true }, backoffLimit: 0,
        },
      };
      const applied = await session().kubectl(['apply', '-f', '-'], { input: JSON.stringify(sft) });
      assert.equal(applied.code, 0, applied.stderr);

      let job: V1Job | undefined;
      await waitFor('the SparseFineTune\'s Job', async () => {
        job = (await clients().batch.listNamespacedJob({ namespace, labelSelector: 'tessera.dev/name=rbac' })).items[0];
        return job !== undefined;
      }, 60_000);
      assert.equal(job?.metadata?.ownerReferences?.[0]?.kind, 'SparseFineTune');

      type Status = { metadata: { generation?: number }; status?: { observedGeneration?: number; jobName?: string; conditions?: { type: string; status: string }[] } };
      const custom = session().kubeConfig.makeApiClient(CustomObjectsApi);
      let obj: Status | undefined;
      await waitFor('the run\'s failure in its status', async () => {
        obj = (await custom.getNamespacedCustomObject({ group: 'tessera.dev', version: 'v1alpha1', namespace, plural: 'sparsefinetunes', name: 'rbac' })) as Status;
        return obj.status?.conditions?.some((c) => c.type === 'Failed' && c.status === 'True') ?? false;
      }, 180_000);
      assert.equal(obj?.status?.observedGeneration, obj?.metadata.generation);
      assert.equal(obj?.status?.jobName, job?.metadata?.name);

      const [operator] = await podsOf(INSTALL_NAMESPACE, SELECTOR);
      assert.equal(operator?.spec?.serviceAccountName, 'tessera-operator');
      // An RBAC refusal names the ServiceAccount; a 403 for a namespace other tests are deleting does not.
      assert.doesNotMatch(await session().podLogs(INSTALL_NAMESPACE, operator?.metadata?.name ?? '', 'operator'), /forbidden: User/i);
      if (!(session() instanceof LocalCluster)) return;
      // The apiserver's own record of what the operator's ServiceAccount asked for.
      const user = `system:serviceaccount:${INSTALL_NAMESPACE}:tessera-operator`;
      // Watches are still open, so they have only their ResponseStarted stage: take every stage.
      const events = (await (session() as LocalCluster).plane.auditEvents()).filter((e) => e.user.username === user);
      const request = (e: AuditEvent): string => e.objectRef?.resource
        ? `${e.verb} ${e.objectRef.apiGroup || 'core'}/${e.objectRef.resource}${e.objectRef.subresource ? `/${e.objectRef.subresource}` : ''}`
        : `${e.verb} ${e.requestURI}`;
      // Authorization refusals only: a 403 from admission (a namespace other tests are deleting) passed RBAC.
      assert.ok(events.some((e) => e.annotations?.['authorization.k8s.io/decision'] === 'allow'), 'the audit log records authorization decisions');
      assert.deepEqual(events.filter((e) => e.annotations?.['authorization.k8s.io/decision'] === 'forbid').map(request), [], 'requests the chart\'s RBAC refused');
      const made = new Set(events.map(request));
      for (const call of ['watch tessera.dev/sparsefinetunes', 'patch batch/jobs', 'patch tessera.dev/sparsefinetunes/status', 'create authentication.k8s.io/tokenreviews', 'get core/pods', 'get batch/jobs']) {
        assert.ok(made.has(call), `the operator made no ${call} (it made: ${[...made].sort().join(', ')})`);
      }
    });

    it('uninstalls cleanly, leaving the CRDs for the custom resources users still hold', async function () {
      this.timeout(180_000);
      const removed = await session().helm(['uninstall', RELEASE, '--namespace', INSTALL_NAMESPACE, '--wait', '--timeout', '2m'], { timeoutMs: 150_000 });
      assert.equal(removed.code, 0, removed.stderr);
      const left: [string, string, boolean][] = [
        ['deployment', 'tessera-operator', true], ['service', 'tessera-operator', true], ['serviceaccount', 'tessera-operator', true],
        ['role', 'tessera-operator', true], ['rolebinding', 'tessera-operator', true],
        ['role', 'tessera-operator-leader-election', true], ['rolebinding', 'tessera-operator-leader-election', true],
        ['clusterrole', 'tessera-operator', false], ['clusterrolebinding', 'tessera-operator', false],
      ];
      for (const [kind, name, namespaced] of left) {
        const got = await session().kubectl(['get', kind, name, ...(namespaced ? ['-n', INSTALL_NAMESPACE] : [])]);
        assert.notEqual(got.code, 0, `${kind} ${name} survived helm uninstall`);
        assert.match(got.stderr, /NotFound/);
      }
      await waitFor('the operator pod to go away', async () => (await podsOf(INSTALL_NAMESPACE, SELECTOR)).length === 0, 60_000);
      const crds = await session().kubectl(['get', 'crd', 'sparsefinetunes.tessera.dev']);
      assert.equal(crds.code, 0, 'Helm never deletes CRDs from crds/, so users keep their objects');
    });
  });
});
