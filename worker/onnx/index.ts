// The graph builder's public surface: `import * as nn from '../onnx/index.js'`.
export * from './dtype.js';
export * from './shape.js';
export * from './tensor.js';
export { Graph, GraphError, Value, OPSET_VERSION, type Node, type Attrs, type AttrValue, type OutputSpec } from './graph.js';
export * from './ops/elementwise.js';
export * from './ops/matmul.js';
export * from './ops/layout.js';
export * from './ops/indexing.js';
export * from './ops/reduce.js';
export * from './ops/nn.js';
