// The CRDs are generated from the TypeBox schemas, the generated YAML is what is committed, and the
// schemas obey the rules the apiserver and the API conventions set for CRDs.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { customResourceDefinitions, KINDS } from '../../../operator/api/v1alpha1/index.js';
import { generatedFiles } from '../../../scripts/gen-crds.js';
import { repoRoot } from '../../cluster/paths.js';

type Node = { [key: string]: unknown };
interface Version {
  schema: { openAPIV3Schema: Node };
  additionalPrinterColumns: { name: string; type: string; jsonPath: string }[];
  selectableFields?: { jsonPath: string }[];
}
interface Crd {
  metadata: { name: string };
  spec: { group: string; scope: string; names: { kind: string; plural: string; shortNames: string[]; categories: string[] }; versions: Version[] };
}

/** Every schema node with its path, for rules that must hold everywhere. */
function nodes(schema: Node, path = ''): { path: string; node: Node }[] {
  const out = [{ path, node: schema }];
  for (const [name, child] of Object.entries((schema.properties as Record<string, Node> | undefined) ?? {})) out.push(...nodes(child, `${path}.${name}`));
  if (schema.items) out.push(...nodes(schema.items as Node, `${path}[]`));
  if (typeof schema.additionalProperties === 'object') out.push(...nodes(schema.additionalProperties as Node, `${path}{}`));
  return out;
}

/** The node a dotted path (as in fieldPath and jsonPath) leads to; arrays are stepped through. */
function resolve(schema: Node, path: string): Node | undefined {
  let node: Node | undefined = schema;
  for (const segment of path.replace(/\[\?\(.*?\)\]/g, '').split('.').filter(Boolean)) {
    while (node?.type === 'array') node = node.items as Node;
    node = (node?.properties as Record<string, Node> | undefined)?.[segment];
  }
  return node;
}

const crds = customResourceDefinitions() as unknown as Crd[];

// Free-form on purpose: affinity is large, versioned by core/v1, and validated when the pod is created.
const PRESERVE_UNKNOWN_ALLOWED = new Set(['.spec.resources.affinity']);

describe('the CRDs', () => {
  it('are committed exactly as the generator writes them, in crds/ and in the chart\'s crds/', () => {
    for (const file of generatedFiles()) {
      assert.equal(readFileSync(join(repoRoot, file.path), 'utf8'), file.content, `${file.path} is stale: run npm run gen:crds`);
    }
  });

  it('parse back from the committed YAML into exactly the objects the generator builds', () => {
    const committed = generatedFiles().filter((f) => f.path.startsWith('crds')).map((f) => parse(readFileSync(join(repoRoot, f.path), 'utf8')) as unknown);
    assert.deepEqual(committed, JSON.parse(JSON.stringify(crds)));
  });

  it('come out byte for byte the same on every run, with sorted keys', () => {
    const [first, second] = [generatedFiles(), generatedFiles()];
    assert.deepEqual(first, second);
    const content = first[0]!.content;
    assert.ok(content.indexOf('\n  group:') < content.indexOf('\n  names:') && content.indexOf('\n  names:') < content.indexOf('\n  scope:'), 'keys of spec are sorted');
  });

  it('name the group, plural, short name and the tessera category of each kind', () => {
    const names = crds.map((crd) => [crd.metadata.name, crd.spec.names.kind, crd.spec.names.shortNames.join(','), crd.spec.names.categories.join(','), crd.spec.scope]);
    assert.deepEqual(names, [
      ['sparsefinetunes.tessera.dev', 'SparseFineTune', 'sft', 'tessera', 'Namespaced'],
      ['adapterclusters.tessera.dev', 'AdapterCluster', 'ac', 'tessera', 'Namespaced'],
      ['loraservers.tessera.dev', 'LoRAServer', 'ls', 'tessera', 'Namespaced'],
    ]);
    for (const crd of crds) assert.equal(crd.spec.group, 'tessera.dev');
  });

  for (const crd of crds) {
    const kind = crd.spec.names.kind;
    const version = crd.spec.versions[0]!;
    const root = version.schema.openAPIV3Schema;
    const inside = nodes(root).filter(({ path }) => path.startsWith('.spec') || path.startsWith('.status'));

    describe(kind, () => {
      it('describes every field', () => {
        const missing = inside.filter(({ node }) => typeof node.description !== 'string' || node.description.length < 3).map(({ path }) => path);
        assert.deepEqual(missing, []);
      });

      it('has a structural schema: a type on every node and no $ref, const, anyOf, oneOf, allOf or not', () => {
        for (const { path, node } of inside) {
          assert.ok(typeof node.type === 'string' || node['x-kubernetes-int-or-string'] === true, `${path} has no type`);
          for (const banned of ['$ref', 'const', 'anyOf', 'oneOf', 'allOf', 'not', 'patternProperties', '$id', '$schema', 'definitions']) {
            assert.equal(node[banned], undefined, `${path} uses ${banned}`);
          }
        }
      });

      it('preserves unknown fields only where the content is truly free-form', () => {
        const preserving = inside.filter(({ node }) => node['x-kubernetes-preserve-unknown-fields'] === true).map(({ path }) => path);
        assert.deepEqual(preserving.filter((path) => !PRESERVE_UNKNOWN_ALLOWED.has(path)), []);
      });

      it('bounds every spec string and list, so CEL rules stay within the cost budget', () => {
        for (const { path, node } of inside.filter(({ path }) => path.startsWith('.spec'))) {
          if (node.type === 'array') assert.equal(typeof node.maxItems, 'number', `${path} has no maxItems`);
          if (node.type === 'string' && node.enum === undefined) assert.equal(typeof node.maxLength, 'number', `${path} has no maxLength`);
        }
      });

      it('gives every CEL rule a message and points its fieldPath at a field that exists', () => {
        for (const { path, node } of inside) {
          for (const rule of (node['x-kubernetes-validations'] as Node[] | undefined) ?? []) {
            assert.equal(typeof rule.message, 'string', `a rule at ${path} has no message`);
            if (typeof rule.fieldPath === 'string') assert.ok(resolve(node, rule.fieldPath), `${path}: fieldPath ${rule.fieldPath} leads nowhere`);
          }
        }
      });

      it('keys every list-type map by required fields', () => {
        for (const { path, node } of inside.filter(({ node }) => node['x-kubernetes-list-type'] === 'map')) {
          const items = node.items as Node;
          for (const key of node['x-kubernetes-list-map-keys'] as string[]) {
            assert.ok((items.required as string[] | undefined)?.includes(key), `${path}: map key ${key} is not required`);
          }
        }
      });

      it('shows printer columns and selectable fields that exist in the schema with the declared type', () => {
        for (const column of version.additionalPrinterColumns) {
          if (column.jsonPath.startsWith('.metadata')) continue;
          const target = resolve(root, column.jsonPath);
          assert.ok(target, `column ${column.name}: ${column.jsonPath} leads nowhere`);
          assert.equal(target.type, column.type, `column ${column.name} is declared ${column.type} but ${column.jsonPath} is ${String(target.type)}`);
        }
        for (const { jsonPath } of version.selectableFields ?? []) {
          assert.ok(['string', 'integer', 'boolean'].includes(String(resolve(root, jsonPath)?.type)), `selectable field ${jsonPath} must be a string, integer or boolean`);
        }
      });

      it('keeps status conditions in the shape of metav1.Condition, keyed by type', () => {
        const conditions = resolve(root, '.status.conditions')!;
        assert.deepEqual([conditions['x-kubernetes-list-type'], conditions['x-kubernetes-list-map-keys']], ['map', ['type']]);
        assert.deepEqual([...((conditions.items as Node).required as string[])].sort(), ['lastTransitionTime', 'message', 'reason', 'status', 'type']);
        assert.deepEqual(resolve(root, '.status.conditions.status')!.enum, ['True', 'False', 'Unknown']);
        assert.equal(resolve(root, '.status.observedGeneration')!.type, 'integer');
      });
    });
  }

  it('declares each kind once, with a status subresource', () => {
    assert.deepEqual(KINDS.map((k) => k.kind), ['SparseFineTune', 'AdapterCluster', 'LoRAServer']);
    for (const crd of crds) assert.deepEqual((crd.spec.versions[0] as unknown as { subresources: unknown }).subresources, { status: {} });
  });
});
