// CustomResourceDefinition objects for the three kinds, derived from the TypeBox schemas.
import type { TSchema } from '@sinclair/typebox';
import { AdapterClusterSpec, AdapterClusterStatus } from './adaptercluster.js';
import { LoRAServerSpec, LoRAServerStatus } from './loraserver.js';
import { SparseFineTuneSpec, SparseFineTuneStatus } from './sparsefinetune.js';

export const GROUP = 'tessera.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

type JsonSchema = { [key: string]: unknown };

interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  jsonPath: string;
  description: string;
  priority?: number;
}

export interface KindInfo {
  kind: string;
  plural: string;
  singular: string;
  shortName: string;
  description: string;
  spec: TSchema;
  status: TSchema;
  columns: PrinterColumn[];
  /** Fields `kubectl get --field-selector` (and list calls) may filter on; strings, integers or booleans only. */
  selectableFields: string[];
}

const READY: PrinterColumn = { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status', description: 'Whether the resource is ready.' };
const STAGE: PrinterColumn = { name: 'Stage', type: 'string', jsonPath: '.status.stage', description: 'What is happening now.' };
const AGE: PrinterColumn = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp', description: 'Time since creation.' };

export const KINDS: KindInfo[] = [
  {
    kind: 'SparseFineTune', plural: 'sparsefinetunes', singular: 'sparsefinetune', shortName: 'sft',
    description: 'SparseFineTune prunes a base model and fine-tunes LoRA adapters that merge back without losing the sparsity.',
    spec: SparseFineTuneSpec, status: SparseFineTuneStatus,
    columns: [
      { name: 'Method', type: 'string', jsonPath: '.spec.method', description: 'Sparse fine-tuning method.' },
      { name: 'Sparsity', type: 'integer', jsonPath: '.spec.sparsity.targetPercent', description: 'Target sparsity in percent.' },
      STAGE,
      { name: 'Progress', type: 'integer', jsonPath: '.status.progress.percent', description: 'Progress in percent.' },
      READY,
      { name: 'Perplexity', type: 'number', jsonPath: '.status.metrics.perplexityAfter', description: 'Held-out perplexity after fine-tuning.', priority: 1 },
      AGE,
    ],
    // enrollInto lets the AdapterCluster controller list exactly the runs that feed it.
    selectableFields: ['.spec.method', '.spec.output.enrollInto.adapterCluster'],
  },
  {
    kind: 'AdapterCluster', plural: 'adapterclusters', singular: 'adaptercluster', shortName: 'ac',
    description: 'AdapterCluster compresses a collection of LoRA adapters jointly into shared bases plus a small per-adapter matrix.',
    spec: AdapterClusterSpec, status: AdapterClusterStatus,
    columns: [
      { name: 'Method', type: 'string', jsonPath: '.spec.compression.method', description: 'Compression method.' },
      { name: 'Adapters', type: 'integer', jsonPath: '.status.adapterCount', description: 'Adapters in the current bundle.' },
      { name: 'Saved', type: 'number', jsonPath: '.status.parameterSavedPercent', description: 'Parameters saved, in percent.' },
      { name: 'Revision', type: 'string', jsonPath: '.status.revision', description: 'Current bundle revision.' },
      STAGE, READY, AGE,
    ],
    selectableFields: ['.spec.compression.method'],
  },
  {
    kind: 'LoRAServer', plural: 'loraservers', singular: 'loraserver', shortName: 'ls',
    description: 'LoRAServer serves a base model with many adapters behind an OpenAI-compatible API.',
    spec: LoRAServerSpec, status: LoRAServerStatus,
    columns: [
      { name: 'Replicas', type: 'integer', jsonPath: '.spec.replicas', description: 'Desired replicas.' },
      { name: 'Ready-Replicas', type: 'integer', jsonPath: '.status.readyReplicas', description: 'Replicas serving the desired revision.' },
      { name: 'Adapters', type: 'integer', jsonPath: '.status.servedAdapters', description: 'Adapters servable now.' },
      { name: 'Revision', type: 'string', jsonPath: '.status.bundleRevision.desired', description: 'Desired bundle revision.' },
      { name: 'Endpoint', type: 'string', jsonPath: '.status.endpoint', description: 'OpenAI-compatible endpoint.', priority: 1 },
      STAGE, READY, AGE,
    ],
    selectableFields: [],
  },
];

/**
 * Plain JSON schema from TypeBox: drops its symbol keys, turns Record into additionalProperties, and
 * drops defaulted fields from `required`. The apiserver fills defaults before anyone reads an object,
 * so the TypeScript type (from which the same schema came) rightly has them required on read.
 */
export function toOpenApi(schema: unknown): JsonSchema {
  const plain = JSON.parse(JSON.stringify(schema)) as JsonSchema;
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) {
      node.forEach(walk);
      return;
    }
    if (typeof node !== 'object' || node === null) return;
    const obj = node as JsonSchema;
    const pattern = obj.patternProperties as JsonSchema | undefined;
    if (pattern) {
      const values = Object.values(pattern);
      if (values.length !== 1) throw new Error(`a schema node has ${values.length} patternProperties; CRDs allow only additionalProperties`);
      obj.additionalProperties = values[0];
      delete obj.patternProperties;
    }
    const properties = obj.properties as Record<string, JsonSchema> | undefined;
    if (properties && Array.isArray(obj.required)) {
      const required = (obj.required as string[]).filter((name) => properties[name]?.default === undefined);
      if (required.length > 0) obj.required = required;
      else delete obj.required;
    }
    for (const value of Object.values(obj)) walk(value);
    // A `default: {}` is validated (CEL included) as written, so spell out the children's defaults in it.
    const dflt = obj.default;
    if (properties && typeof dflt === 'object' && dflt !== null && !Array.isArray(dflt) && Object.keys(dflt).length === 0) {
      obj.default = Object.fromEntries(Object.entries(properties).filter(([, p]) => p.default !== undefined).map(([k, p]) => [k, p.default]));
    }
  };
  walk(plain);
  return plain;
}

export function customResourceDefinition(info: KindInfo): JsonSchema {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${info.plural}.${GROUP}` },
    spec: {
      group: GROUP,
      names: { kind: info.kind, listKind: `${info.kind}List`, plural: info.plural, singular: info.singular, shortNames: [info.shortName], categories: ['tessera'] },
      scope: 'Namespaced',
      versions: [{
        name: VERSION,
        served: true,
        storage: true,
        subresources: { status: {} },
        additionalPrinterColumns: info.columns,
        ...(info.selectableFields.length > 0 ? { selectableFields: info.selectableFields.map((jsonPath) => ({ jsonPath })) } : {}),
        schema: {
          openAPIV3Schema: {
            type: 'object',
            description: info.description,
            required: ['spec'],
            properties: {
              apiVersion: { type: 'string', description: 'APIVersion of this object: tessera.dev/v1alpha1.' },
              kind: { type: 'string', description: `Kind of this object: ${info.kind}.` },
              metadata: { type: 'object' },
              spec: toOpenApi(info.spec),
              status: toOpenApi(info.status),
            },
          },
        },
      }],
    },
  };
}

export function customResourceDefinitions(): JsonSchema[] {
  return KINDS.map(customResourceDefinition);
}
