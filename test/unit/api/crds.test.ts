// The CRDs are generated from the TypeBox schemas, and the generated YAML is what is committed.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { customResourceDefinitions, type AdapterCluster, type LoRAServer, type SparseFineTune } from '../../../operator/api/v1alpha1/index.js';
import { generatedFiles } from '../../../scripts/gen-crds.js';
import { repoRoot } from '../../cluster/paths.js';

type Node = { [key: string]: unknown };

/** Every schema node with its path, for rules that must hold everywhere. */
function nodes(schema: Node, path = ''): { path: string; node: Node }[] {
  const out = [{ path, node: schema }];
  for (const [name, child] of Object.entries((schema.properties as Record<string, Node> | undefined) ?? {})) out.push(...nodes(child, `${path}.${name}`));
  if (schema.items) out.push(...nodes(schema.items as Node, `${path}[]`));
  if (typeof schema.additionalProperties === 'object') out.push(...nodes(schema.additionalProperties as Node, `${path}{}`));
  return out;
}

const schemas = customResourceDefinitions().map((crd) => {
  const spec = crd.spec as { names: { kind: string }; versions: { schema: { openAPIV3Schema: Node } }[] };
  return { kind: spec.names.kind, root: spec.versions[0]!.schema.openAPIV3Schema };
});

describe('the CRDs', () => {
  it('are committed exactly as the generator writes them (crds/ and the chart\'s crds/)', () => {
    for (const file of generatedFiles()) {
      assert.equal(readFileSync(join(repoRoot, file.path), 'utf8'), file.content, `${file.path} is stale: run npm run gen:crds`);
    }
  });

  for (const { kind, root } of schemas) {
    const inside = nodes(root).filter(({ path }) => path.startsWith('.spec') || path.startsWith('.status'));

    it(`describe every field of ${kind}`, () => {
      const missing = inside.filter(({ node }) => typeof node.description !== 'string' || node.description.length < 3).map(({ path }) => path);
      assert.deepEqual(missing, []);
    });

    it(`give ${kind} a structural schema: a type on every node, no $ref, const or anyOf`, () => {
      for (const { path, node } of inside) {
        assert.ok(typeof node.type === 'string' || node['x-kubernetes-int-or-string'] === true, `${path} has no type`);
        for (const banned of ['$ref', 'const', 'anyOf', 'oneOf', 'allOf', 'patternProperties', '$id']) assert.equal(node[banned], undefined, `${path} uses ${banned}`);
      }
    });

    it(`bound every ${kind} string and list that CEL rules read, so the cost budget holds`, () => {
      for (const { path, node } of inside.filter(({ path }) => path.startsWith('.spec'))) {
        if (node.type === 'array') assert.equal(typeof node.maxItems, 'number', `${path} has no maxItems`);
        if (node.type === 'string' && node.enum === undefined && node.format === undefined) assert.equal(typeof node.maxLength, 'number', `${path} has no maxLength`);
      }
    });
  }

  it('ship samples that type-check as the generated TypeScript types', () => {
    const dir = join(repoRoot, 'crds', 'samples');
    const kinds = new Set<string>();
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml'))) {
      for (const doc of parseAllDocuments(readFileSync(join(dir, file), 'utf8'))) {
        const obj = doc.toJS() as { kind: string };
        kinds.add(obj.kind);
        // The assignments are the check: a sample whose shape drifts from the schema types fails to compile.
        if (obj.kind === 'SparseFineTune') assert.ok((obj as SparseFineTune).spec.method);
        else if (obj.kind === 'AdapterCluster') assert.ok((obj as AdapterCluster).spec.adapters.length > 0);
        else if (obj.kind === 'LoRAServer') assert.ok((obj as LoRAServer).spec.baseModel.uri);
        else assert.fail(`${file} holds an unknown kind ${obj.kind}`);
      }
    }
    assert.deepEqual([...kinds].sort(), ['AdapterCluster', 'LoRAServer', 'SparseFineTune']);
  });

  it('name the group, short names and the tessera category', () => {
    for (const file of generatedFiles().filter((f) => f.path.startsWith('crds'))) {
      const crd = parse(file.content) as { spec: { group: string; names: { shortNames: string[]; categories: string[] } } };
      assert.equal(crd.spec.group, 'tessera.dev');
      assert.deepEqual(crd.spec.names.categories, ['tessera']);
      assert.equal(crd.spec.names.shortNames.length, 1);
    }
  });
});
