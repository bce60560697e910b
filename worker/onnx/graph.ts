// The graph under construction: typed value handles, nodes with their attributes, and
// serialization to an ONNX ModelProto. Ops (ops/*.ts) add nodes through `addNode`, which
// names the node before shape inference runs so every error can point at it.
import { ONNX_DTYPE_CODE, type DType } from './dtype.js';
import { ATTRIBUTE_TYPE, encodeModel, IR_VERSION, type AttributeMessage, type TensorMessage, type ValueInfoMessage } from './proto.js';
import { checkDims, formatShape, type Shape } from './shape.js';
import { rawBytes, tensor, type Tensor } from './tensor.js';

export const OPSET_VERSION = 21;

export type AttrValue =
  | { readonly f: number }
  | { readonly i: number }
  | { readonly s: string }
  | { readonly t: Tensor }
  | { readonly floats: readonly number[] }
  | { readonly ints: readonly number[] };

export type Attrs = Readonly<Record<string, AttrValue>>;

export type ValueKind = 'input' | 'initializer' | 'node';

export class GraphError extends Error {
  override name = 'GraphError';
}

export class Value {
  constructor(
    readonly graph: Graph,
    readonly name: string,
    readonly dtype: DType,
    readonly shape: Shape,
    readonly kind: ValueKind,
    readonly producer: Node | null,
  ) {}

  get rank(): number {
    return this.shape.length;
  }

  toString(): string {
    return `${this.name}: ${this.dtype}${formatShape(this.shape)}`;
  }
}

export interface Node {
  readonly name: string;
  readonly opType: string;
  readonly inputs: readonly Value[];
  readonly outputs: readonly Value[];
  readonly attrs: Attrs;
}

export interface OutputSpec {
  dtype: DType;
  shape: Shape;
}

export class Graph {
  readonly nodes: Node[] = [];
  readonly inputs: Value[] = [];
  readonly initializers: Value[] = [];
  readonly outputs: Value[] = [];
  private readonly names = new Set<string>();
  private readonly constants = new Map<Value, Tensor>();
  private readonly trainableSet = new Set<Value>();
  private counter = 0;

  constructor(readonly name = 'tessera') {}

  /** A value fed at every run (symbolic dims such as 'B' are allowed). */
  input(name: string, dtype: DType, shape: Shape): Value {
    this.claim(name, 'input');
    for (const d of shape) {
      if (typeof d === 'number') checkDims([d], `input ${name}`);
      else if (d.length === 0) throw new GraphError(`input ${name}: empty symbolic dimension in ${formatShape(shape)}`);
    }
    const v = new Value(this, name, dtype, [...shape], 'input', null);
    this.inputs.push(v);
    return v;
  }

  /** A tensor stored in the model; `trainable` marks it as a parameter gradients may be asked for. */
  initializer(name: string, t: Tensor, opts: { trainable?: boolean } = {}): Value {
    this.claim(name, 'initializer');
    const v = new Value(this, name, t.dtype, [...t.dims], 'initializer', null);
    this.initializers.push(v);
    this.constants.set(v, t);
    if (opts.trainable) this.trainableSet.add(v);
    return v;
  }

  /** An anonymous constant (an initializer with a generated name). */
  constant(dtype: DType, dims: readonly number[], values: ArrayLike<number>): Value {
    return this.initializer(this.fresh('const'), tensor(dtype, dims, values));
  }

  scalar(x: number, dtype: DType): Value {
    return this.constant(dtype, [], [x]);
  }

  /** A 1-D int64 constant, the form shape/axes/starts operands take. */
  int64s(values: readonly number[]): Value {
    return this.constant('int64', [values.length], values);
  }

  /** The data of a constant value, or undefined for anything computed or fed. */
  constantOf(v: Value): Tensor | undefined {
    return this.constants.get(v);
  }

  isTrainable(v: Value): boolean {
    return this.trainableSet.has(v);
  }

  get trainable(): Value[] {
    return this.initializers.filter((v) => this.trainableSet.has(v));
  }

  /** Appends a node. `infer` gets "Op node name" for its messages and returns the output types. */
  addNode(opType: string, inputs: readonly Value[], attrs: Attrs, infer: (where: string) => OutputSpec[], outputName?: string): Value[] {
    const name = outputName ?? this.fresh(opType);
    const where = `${opType} node ${name}`;
    for (const v of inputs) {
      if (v.graph !== this) throw new GraphError(`${where}: input ${v.name} belongs to another graph`);
    }
    const specs = infer(where);
    const outputs: Value[] = [];
    const node: Node = { name, opType, inputs: [...inputs], outputs, attrs };
    specs.forEach((s, i) => {
      const outName = specs.length === 1 ? name : `${name}_${i}`;
      this.claim(outName, 'value');
      outputs.push(new Value(this, outName, s.dtype, s.shape, 'node', node));
    });
    this.nodes.push(node);
    return outputs;
  }

  /** Marks a graph output; a different `name` adds an Identity so callers get stable names. */
  output(v: Value, name?: string): Value {
    let out = v;
    if (name !== undefined && name !== v.name) {
      if (this.names.has(name)) throw new GraphError(`output ${name}: the name is already used in graph ${this.name}`);
      out = this.addNode('Identity', [v], {}, () => [{ dtype: v.dtype, shape: v.shape }], name)[0] as Value;
    }
    if (this.outputs.includes(out)) throw new GraphError(`output ${out.name} is already an output of graph ${this.name}`);
    this.outputs.push(out);
    return out;
  }

  /** The model as ONNX protobuf bytes. */
  toModel(): Uint8Array {
    if (this.outputs.length === 0) throw new GraphError(`graph ${this.name} has no outputs: call graph.output(value) first`);
    return encodeModel({
      irVersion: IR_VERSION,
      producerName: 'tessera',
      producerVersion: '0.1.0',
      opsetImport: [{ domain: '', version: OPSET_VERSION }],
      graph: {
        name: this.name,
        node: this.nodes.map((n) => ({
          input: n.inputs.map((v) => v.name),
          output: n.outputs.map((v) => v.name),
          name: n.name,
          opType: n.opType,
          domain: '',
          attribute: Object.entries(n.attrs).map(([k, a]) => attributeMessage(k, a)),
        })),
        initializer: this.initializers.map((v) => tensorMessage(this.constants.get(v) as Tensor, v.name)),
        input: this.inputs.map(valueInfo),
        output: this.outputs.map(valueInfo),
        valueInfo: [],
      },
    });
  }

  private fresh(prefix: string): string {
    let name: string;
    do name = `${prefix}_${this.counter++}`;
    while (this.names.has(name));
    return name;
  }

  private claim(name: string, what: string): void {
    if (name.length === 0) throw new GraphError(`${what} name must not be empty`);
    if (this.names.has(name)) throw new GraphError(`${what} ${name}: the name is already used in graph ${this.name}`);
    this.names.add(name);
  }
}

export function tensorMessage(t: Tensor, name?: string): TensorMessage {
  const m: TensorMessage = { dims: [...t.dims], dataType: ONNX_DTYPE_CODE[t.dtype], rawData: rawBytes(t) };
  if (name !== undefined) m.name = name;
  return m;
}

function attributeMessage(name: string, a: AttrValue): AttributeMessage {
  if ('f' in a) return { name, type: ATTRIBUTE_TYPE.FLOAT, f: a.f };
  if ('i' in a) return { name, type: ATTRIBUTE_TYPE.INT, i: a.i };
  if ('s' in a) return { name, type: ATTRIBUTE_TYPE.STRING, s: new TextEncoder().encode(a.s) };
  if ('t' in a) return { name, type: ATTRIBUTE_TYPE.TENSOR, t: tensorMessage(a.t) };
  if ('floats' in a) return { name, type: ATTRIBUTE_TYPE.FLOATS, floats: [...a.floats] };
  return { name, type: ATTRIBUTE_TYPE.INTS, ints: [...a.ints] };
}

function valueInfo(v: Value): ValueInfoMessage {
  return {
    name: v.name,
    type: {
      tensorType: {
        elemType: ONNX_DTYPE_CODE[v.dtype],
        shape: { dim: v.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}
