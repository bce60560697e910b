import { strict as assert } from 'node:assert';
import protobuf from 'protobufjs';
import * as nn from '../../../worker/onnx/index.js';
import { decodeModel } from '../../../worker/onnx/proto.js';

/** Top-level field numbers and wire types of a protobuf message, in order. */
function fieldTags(bytes: Uint8Array): string[] {
  const r = protobuf.Reader.create(bytes);
  const tags: string[] = [];
  while (r.pos < r.len) {
    const tag = r.uint32();
    tags.push(`${tag >>> 3}:${tag & 7}`);
    r.skipType(tag & 7);
  }
  return tags;
}

function tinyModel(): Uint8Array {
  const g = new nn.Graph('tiny');
  const x = g.input('x', 'float32', ['B', 2]);
  const w = g.initializer('w', nn.tensor('float32', [2, 2], [1, 2, 3, 4]));
  g.output(nn.transpose(nn.matmul(x, w), [1, 0]), 'y');
  return g.toModel();
}

describe('ONNX protobuf serialization', () => {
  it('writes ModelProto fields with the numbers of onnx.proto (ir_version=1, producer_name=2, graph=7, opset_import=8)', () => {
    const tags = fieldTags(tinyModel());
    assert.deepEqual(tags, ['1:0', '2:2', '3:2', '7:2', '8:2']);
  });

  it('round-trips the graph: inputs with symbolic dims, raw-data initializers, attributes and outputs', () => {
    const m = decodeModel(tinyModel());
    assert.equal(m.irVersion, 10);
    assert.deepEqual(m.opsetImport, [{ domain: '', version: nn.OPSET_VERSION }]);
    const g = m.graph;
    assert.deepEqual(g.input[0]?.type.tensorType.shape.dim, [{ dimParam: 'B' }, { dimValue: 2 }]);
    assert.equal(g.input[0]?.type.tensorType.elemType, 1);
    const w = g.initializer.find((t) => t.name === 'w');
    assert.deepEqual(w?.dims, [2, 2]);
    assert.deepEqual(Array.from(new Float32Array(Uint8Array.from(w?.rawData ?? []).buffer)), [1, 2, 3, 4]);
    const t = g.node.find((n) => n.opType === 'Transpose');
    const perm = t?.attribute[0];
    assert.deepEqual([perm?.name, perm?.type, perm?.ints], ['perm', 7, [1, 0]]);
    assert.deepEqual(g.output.map((o) => o.name), ['y']);
  });

  it('refuses to serialize a graph without outputs and says how to add one', () => {
    assert.throws(() => new nn.Graph('empty').toModel(), /graph empty has no outputs: call graph.output\(value\) first/);
  });
});
