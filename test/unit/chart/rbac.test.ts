// Least privilege, checked against the code: every permission the chart grants is named below
// with the code in the operator that needs it (found in a file tessera-operator actually
// imports), nothing is granted by wildcard, and every typed API call the operator makes is
// granted. The integration test in helm.test.ts shows the grants are enough on a real apiserver.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import type { V1PolicyRule } from '@kubernetes/client-node';
import { ensureBinaries } from '../../cluster/binaries.js';
import { exec } from '../../cluster/exec.js';
import { repoRoot, toolPath } from '../../cluster/paths.js';

type Scope = 'cluster' | 'namespace';

/** One reason to grant: the verbs on these resources, and code that shows the operator needs them. */
interface Use {
  scope: Scope;
  group: string;
  resources: string[];
  verbs: string[];
  /** Each pattern must occur in its file, and the file must be part of tessera-operator. */
  code: { file: string; pattern: RegExp }[];
}

const KINDS = ['adapterclusters', 'loraservers', 'sparsefinetunes'];
const SSA = { file: 'operator/manager/kube-deps.ts', pattern: /applyObject\(this\.rest, obj\)/ };

const USES: Use[] = [
  { scope: 'cluster', group: 'tessera.dev', resources: KINDS, verbs: ['list', 'watch'], code: [
    { file: 'operator/manager/manager.ts', pattern: /informer<Custom<SparseFineTune>>\(api, 'SparseFineTune'\)/ },
    { file: 'operator/manager/manager.ts', pattern: /informer<Custom<AdapterCluster>>\(api, 'AdapterCluster'\)/ },
    { file: 'operator/manager/manager.ts', pattern: /informer<Custom<LoRAServer>>\(api, 'LoRAServer'\)/ },
  ] },
  { scope: 'cluster', group: 'tessera.dev', resources: KINDS.map((k) => `${k}/status`), verbs: ['patch'], code: [
    { file: 'operator/manager/kube-deps.ts', pattern: /patchStatus\(this\.rest, obj, status\)/ },
    { file: 'operator/status/sink.ts', pattern: /this\.rest\.patch\(target, 'merge', body, \{ subresource: 'status'/ },
  ] },
  { scope: 'cluster', group: 'tessera.dev', resources: KINDS.map((k) => `${k}/status`), verbs: ['get'], code: [{ file: 'operator/status/sink.ts', pattern: /'GET', await this\.rest\.path\(ref\.apiVersion \|\| 'tessera\.dev\/v1alpha1', ref\.kind, ref\.namespace, ref\.name, 'status'\)/ }] },
  { scope: 'cluster', group: 'tessera.dev', resources: KINDS.map((k) => `${k}/finalizers`), verbs: ['update'], code: [{ file: 'operator/controllers/common/worker-pod.ts', pattern: /blockOwnerDeletion: true/ }] },
  { scope: 'cluster', group: 'batch', resources: ['jobs'], verbs: ['list', 'watch'], code: [{ file: 'operator/manager/manager.ts', pattern: /informer<V1Job>\('batch\/v1', 'Job'\)/ }] },
  { scope: 'cluster', group: 'batch', resources: ['jobs'], verbs: ['create', 'patch'], code: [SSA, { file: 'operator/controllers/sparsefinetune/desired.ts', pattern: /apiVersion: 'batch\/v1', kind: 'Job'/ }] },
  { scope: 'cluster', group: 'batch', resources: ['jobs'], verbs: ['delete'], code: [{ file: 'operator/manager/kube-deps.ts', pattern: /deleteNamespacedJob\(/ }] },
  { scope: 'cluster', group: 'batch', resources: ['jobs'], verbs: ['get'], code: [{ file: 'operator/status/owner.ts', pattern: /readNamespacedJob\(/ }] },
  { scope: 'cluster', group: 'apps', resources: ['deployments'], verbs: ['list', 'watch'], code: [{ file: 'operator/manager/manager.ts', pattern: /informer<V1Deployment>\('apps\/v1', 'Deployment'\)/ }] },
  { scope: 'cluster', group: 'apps', resources: ['deployments'], verbs: ['create', 'patch'], code: [SSA, { file: 'operator/controllers/loraserver/desired.ts', pattern: /apiVersion: 'apps\/v1', kind: 'Deployment'/ }] },
  { scope: 'cluster', group: 'apps', resources: ['deployments'], verbs: ['get'], code: [{ file: 'operator/status/owner.ts', pattern: /readNamespacedDeployment\(/ }] },
  { scope: 'cluster', group: 'apps', resources: ['replicasets'], verbs: ['get'], code: [{ file: 'operator/status/owner.ts', pattern: /readNamespacedReplicaSet\(/ }] },
  { scope: 'cluster', group: '', resources: ['pods'], verbs: ['get'], code: [{ file: 'operator/status/owner.ts', pattern: /readNamespacedPod\(/ }] },
  { scope: 'cluster', group: '', resources: ['services'], verbs: ['create', 'patch'], code: [SSA, { file: 'operator/controllers/loraserver/desired.ts', pattern: /apiVersion: 'v1', kind: 'Service'/ }] },
  { scope: 'cluster', group: '', resources: ['configmaps'], verbs: ['create', 'patch'], code: [
    SSA,
    { file: 'operator/controllers/common/spec-file.ts', pattern: /apiVersion: 'v1', kind: 'ConfigMap'/ },
    { file: 'operator/manager/kube-deps.ts', pattern: /async ensureCa\(/ },
  ] },
  { scope: 'cluster', group: '', resources: ['events'], verbs: ['create'], code: [{ file: 'operator/manager/kube-deps.ts', pattern: /createNamespacedEvent\(/ }] },
  { scope: 'cluster', group: 'authentication.k8s.io', resources: ['tokenreviews'], verbs: ['create'], code: [{ file: 'operator/status/auth.ts', pattern: /createTokenReview\(/ }] },
  { scope: 'namespace', group: '', resources: ['secrets'], verbs: ['get', 'create', 'update', 'delete'], code: [
    { file: 'operator/tls/store.ts', pattern: /readNamespacedSecret\(/ },
    { file: 'operator/tls/store.ts', pattern: /createNamespacedSecret\(/ },
    { file: 'operator/tls/store.ts', pattern: /replaceNamespacedSecret\(/ },
    { file: 'operator/tls/store.ts', pattern: /deleteNamespacedSecret\(/ },
  ] },
  { scope: 'namespace', group: 'coordination.k8s.io', resources: ['leases'], verbs: ['get', 'create', 'update'], code: [
    { file: 'operator/runtime/leader-election.ts', pattern: /request<Lease>\('GET'/ },
    { file: 'operator/runtime/leader-election.ts', pattern: /request<Lease>\('POST'/ },
    { file: 'operator/runtime/leader-election.ts', pattern: /request<Lease>\('PUT'/ },
  ] },
];

/** Typed calls the scan finds in the operator's files that it never makes at run time, and why. */
const NOT_MADE: { call: string; file: string; because: { file: string; pattern: RegExp } }[] = [
  // The TLS store can publish its CA as ConfigMaps in caNamespaces; the operator passes none and
  // publishes the CA with server-side apply (ensureCa) instead.
  ...['readNamespacedConfigMap', 'replaceNamespacedConfigMap'].map((call) => ({
    call, file: 'operator/tls/store.ts', because: { file: 'operator/run-controllers.ts', pattern: /caNamespaces: \[\]/ },
  })),
];

/** client-node's typed method names: kind → group and resource. */
const TYPED_KINDS: Record<string, { group: string; resource: string }> = {
  ConfigMap: { group: '', resource: 'configmaps' },
  Event: { group: '', resource: 'events' },
  Pod: { group: '', resource: 'pods' },
  Secret: { group: '', resource: 'secrets' },
  Service: { group: '', resource: 'services' },
  Job: { group: 'batch', resource: 'jobs' },
  Deployment: { group: 'apps', resource: 'deployments' },
  ReplicaSet: { group: 'apps', resource: 'replicasets' },
  Lease: { group: 'coordination.k8s.io', resource: 'leases' },
  TokenReview: { group: 'authentication.k8s.io', resource: 'tokenreviews' },
};
const TYPED_VERBS: Record<string, string> = { read: 'get', get: 'get', list: 'list', create: 'create', replace: 'update', patch: 'patch', delete: 'delete' };

const permission = (scope: Scope, group: string, resource: string, verb: string): string => `${scope} ${group || 'core'}/${resource} ${verb}`;
const expand = (scope: Scope, groups: string[], resources: string[], verbs: string[]): string[] =>
  groups.flatMap((g) => resources.flatMap((r) => verbs.map((v) => permission(scope, g, r, v))));

/** Files of the operator binary: the relative-import closure of its entry point. */
function operatorFiles(): Set<string> {
  const seen = new Set<string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(join(repoRoot, file), 'utf8');
    for (const imported of ts.preProcessFile(text, true, true).importedFiles) {
      if (!imported.fileName.startsWith('.')) continue;
      visit(relative(repoRoot, resolve(repoRoot, dirname(file), imported.fileName.replace(/\.js$/, '.ts'))));
    }
  };
  visit('operator/main.ts');
  return seen;
}

interface Rendered {
  kind: string;
  metadata: { name: string; namespace?: string };
  rules?: (V1PolicyRule & { nonResourceURLs?: string[] })[];
  subjects?: { kind: string; name: string; namespace?: string }[];
}

describe('the chart\'s RBAC', () => {
  const NAMESPACE = 'tessera-system';
  let objects: Rendered[];
  let granted: string[];

  before(async function () {
    // A fresh clone has no helm yet: build just that (minutes, once), not the control plane.
    this.timeout(900_000);
    await ensureBinaries((m) => console.error(m), ['helm']);
    const result = await exec(toolPath('helm'), ['template', 'tessera', join(repoRoot, 'charts', 'tessera'), '--namespace', NAMESPACE]);
    assert.equal(result.code, 0, result.stderr);
    objects = parseAllDocuments(result.stdout).map((d) => d.toJS() as Rendered | null).filter((o): o is Rendered => o !== null);
    granted = objects.flatMap((o) => {
      if (o.kind !== 'ClusterRole' && o.kind !== 'Role') return [];
      const scope: Scope = o.kind === 'ClusterRole' ? 'cluster' : 'namespace';
      return (o.rules ?? []).flatMap((r) => expand(scope, r.apiGroups ?? [], r.resources ?? [], r.verbs));
    }).sort();
  });

  it('grants nothing by wildcard and no non-resource URLs', () => {
    const rules = objects.flatMap((o) => (o.rules ?? []).map((r) => ({ role: `${o.kind} ${o.metadata.name}`, ...r })));
    assert.ok(rules.length > 0, 'the chart renders no RBAC rules');
    for (const rule of rules) {
      for (const [field, values] of [['apiGroups', rule.apiGroups], ['resources', rule.resources], ['verbs', rule.verbs]] as const) {
        assert.ok(!(values ?? []).some((v) => v.includes('*')), `${rule.role} grants ${field} ${JSON.stringify(values)}`);
      }
      assert.equal(rule.nonResourceURLs, undefined, `${rule.role} grants non-resource URLs`);
    }
  });

  it('grants exactly the permissions the operator\'s code needs', () => {
    const needed = [...new Set(USES.flatMap((u) => expand(u.scope, [u.group], u.resources, u.verbs)))].sort();
    assert.deepEqual(granted.filter((p) => !needed.includes(p)), [], 'granted, but no code needs it: drop it from the chart, or name the code in USES');
    assert.deepEqual(needed.filter((p) => !granted.includes(p)), [], 'needed by the code, but not granted');
  });

  it('finds the code behind every grant in the files tessera-operator imports', () => {
    const files = operatorFiles();
    for (const use of USES) {
      for (const { file, pattern } of use.code) {
        const what = `${use.verbs.join(',')} on ${use.resources.join(',')}`;
        assert.ok(files.has(file), `${file}, the reason for ${what}, is not part of tessera-operator (imported from operator/main.ts)`);
        assert.match(readFileSync(join(repoRoot, file), 'utf8'), pattern, `${file} no longer does what needs ${what}`);
      }
    }
  });

  it('grants every typed API call in the operator\'s files', () => {
    const files = operatorFiles();
    const call = /\b(read|get|list|create|replace|patch|delete)(?:Namespaced([A-Z][A-Za-z]*?)(Status)?|(TokenReview)|([A-Z][A-Za-z]*)ForAllNamespaces)\(/g;
    const missing: string[] = [];
    for (const file of files) {
      const text = readFileSync(join(repoRoot, file), 'utf8');
      for (const m of text.matchAll(call)) {
        const [name, verbWord = '', namespacedKind, status, clusterKind, allKind] = m;
        const method = name.slice(0, -1);
        if (NOT_MADE.some((n) => n.call === method && n.file === file)) continue;
        const kind = namespacedKind ?? clusterKind ?? allKind ?? '';
        const verb = TYPED_VERBS[verbWord] ?? verbWord;
        const targets = kind === 'CustomObject'
          ? KINDS.map((k) => ({ group: 'tessera.dev', resource: status ? `${k}/status` : k }))
          : [TYPED_KINDS[kind]].map((t) => t && { ...t, resource: status ? `${t.resource}/status` : t.resource });
        for (const target of targets) {
          if (!target) {
            missing.push(`${file}: ${method} (kind ${kind} is not in TYPED_KINDS; add it)`);
            continue;
          }
          const scopes: Scope[] = ['cluster', 'namespace'];
          if (!scopes.some((s) => granted.includes(permission(s, target.group, target.resource, verb)))) missing.push(`${file}: ${method} needs ${verb} on ${target.group || 'core'}/${target.resource}`);
        }
      }
    }
    assert.deepEqual(missing, []);
    for (const n of NOT_MADE) assert.match(readFileSync(join(repoRoot, n.because.file), 'utf8'), n.because.pattern, `${n.call} in ${n.file} is said never to run because of ${n.because.file}, which changed`);
  });

  it('binds the roles to the chart\'s ServiceAccount, the Roles in the release namespace only', () => {
    for (const o of objects.filter((x) => x.kind === 'Role' || x.kind === 'RoleBinding')) assert.equal(o.metadata.namespace, NAMESPACE, `${o.kind} ${o.metadata.name}`);
    const bindings = objects.filter((o) => o.kind === 'ClusterRoleBinding' || o.kind === 'RoleBinding');
    assert.equal(bindings.length, 3);
    for (const b of bindings) assert.deepEqual(b.subjects, [{ kind: 'ServiceAccount', name: 'tessera-operator', namespace: NAMESPACE }], `${b.kind} ${b.metadata.name}`);
  });
});
