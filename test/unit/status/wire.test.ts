// The TypeScript view of the wire contract and the .proto say the same thing.
import assert from 'node:assert/strict';
import * as protoLoader from '@grpc/proto-loader';
import { DIRECTIVE_KINDS, LOADER_OPTIONS, MESSAGE_FIELDS, PROTO_PACKAGE, REPORT_KINDS, loadStatusProto, protoFile, type WorkerReport } from '../../../operator/status/wire.js';

interface Descriptor {
  type: { field: { name: string }[]; oneofDecl: { name: string }[] };
}

describe('the status wire contract', () => {
  const definition = protoLoader.loadSync(protoFile(), LOADER_OPTIONS);
  const fieldsOf = (message: string): string[] => {
    const descriptor = definition[`${PROTO_PACKAGE}.${message}`] as unknown as Descriptor | undefined;
    assert.ok(descriptor, `message ${message} is in the .proto`);
    return descriptor.type.field.map((f) => f.name).sort();
  };

  for (const [message, fields] of Object.entries(MESSAGE_FIELDS)) {
    it(`${message} has exactly the fields of its TypeScript type`, () => {
      assert.deepEqual(fieldsOf(message), Object.keys(fields).sort());
    });
  }

  it('every message of the .proto has a TypeScript type', () => {
    const messages = Object.keys(definition)
      .filter((name) => name.startsWith(`${PROTO_PACKAGE}.`) && 'type' in (definition[name] as object) && !name.endsWith('Entry'))
      .map((name) => name.slice(PROTO_PACKAGE.length + 1))
      .filter((name) => name !== 'StatusHub')
      .sort();
    assert.deepEqual(messages, Object.keys(MESSAGE_FIELDS).sort());
  });

  it('the oneof members are the report and directive kinds', () => {
    const report = definition[`${PROTO_PACKAGE}.WorkerReport`] as unknown as Descriptor;
    assert.deepEqual(report.type.oneofDecl.map((o) => o.name), ['body']);
    assert.deepEqual(fieldsOf('WorkerReport').filter((f) => !['seq', 'object', 'pod', 'unixMs'].includes(f)), [...REPORT_KINDS].sort());
    assert.deepEqual(fieldsOf('Directive').filter((f) => f !== 'id'), [...DIRECTIVE_KINDS].sort());
  });

  it('round-trips a report with 64-bit fields as numbers and names the body member', () => {
    const method = loadStatusProto().service.Connect;
    assert.ok(method);
    const report: WorkerReport = {
      seq: 2 ** 40, pod: 'p', unixMs: 1_700_000_000_123, body: 'metrics',
      object: { apiVersion: 'tessera.dev/v1alpha1', kind: 'SparseFineTune', namespace: 'ns', name: 'a', uid: 'u', generation: 3 },
      metrics: { values: { loss: 1.25 }, layers: [{ index: 1, sparsityPercent: 70.5, rank: 8, reconstructionError: 0.01 }] },
    };
    const decoded = method.requestDeserialize(method.requestSerialize(report)) as WorkerReport;
    assert.equal(decoded.body, 'metrics');
    assert.equal(decoded.seq, 2 ** 40);
    assert.equal(decoded.unixMs, 1_700_000_000_123);
    assert.deepEqual(decoded.object, report.object);
    assert.deepEqual(decoded.body === 'metrics' && decoded.metrics, report.metrics);
  });
});
