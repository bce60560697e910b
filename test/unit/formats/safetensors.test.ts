import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { f32ToBf16Bits, f32ToF16Bits } from '../../../worker/formats/half.js';
import { SafetensorsReader, readSafetensors, writeSafetensors } from '../../../worker/formats/safetensors.js';
import { makeTensor, type Tensor } from '../../../worker/formats/tensor.js';

const FIXTURE = fileURLToPath(new URL('../../fixtures/formats/reference.safetensors', import.meta.url));

async function tempDir(): Promise<string> {
  return fsp.mkdtemp(join(tmpdir(), 'tessera-st-'));
}

/** A safetensors file with a hand-written header, for the malformed cases. */
function rawFile(header: string, dataBytes: number, headerLength?: bigint): Uint8Array {
  const json = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + json.byteLength + dataBytes);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(json.byteLength), true);
  out.set(json, 8);
  return out;
}

const entry = (dtype: string, shape: number[], offsets: [number, number]): object => ({ dtype, shape, data_offsets: offsets });

describe('safetensors', () => {
  let dir: string;
  before(async () => {
    dir = await tempDir();
  });
  after(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  describe('a file written by the reference Python implementation', () => {
    it('is read with its metadata, dtypes, shapes and values', async () => {
      const { metadata, tensors } = await readSafetensors(FIXTURE);
      assert.deepEqual(metadata, { format: 'np' });
      const m = tensors.get('matrix_f32') as Tensor;
      assert.equal(m.dtype, 'F32');
      assert.deepEqual(m.shape, [3, 4]);
      assert.deepEqual(Array.from(m.data as Float32Array), Array.from({ length: 12 }, (_, i) => i / 4));
      const i64 = tensors.get('ids_i64') as Tensor;
      assert.deepEqual(Array.from(i64.data as BigInt64Array), [-1n, 0n, 2n ** 40n, 2n ** 62n, -(2n ** 62n), 7n]);
      assert.deepEqual(Array.from(tensors.get('ids_i32')?.data as Int32Array), [-(2 ** 31), 2 ** 31 - 1, 0, 5]);
      assert.deepEqual(Array.from(tensors.get('mask_u8')?.data as Uint8Array), [0, 1, 255]);
      const mask = tensors.get('mask_bool') as Tensor;
      assert.equal(mask.dtype, 'BOOL');
      assert.deepEqual(Array.from(mask.data as Uint8Array), [1, 0, 0, 1]);
      assert.deepEqual(tensors.get('empty_f32')?.shape, [0, 4]);
    });

    it('holds F16 and BF16 copies that our float32 conversion reproduces bit for bit', async () => {
      const { tensors } = await readSafetensors(FIXTURE);
      const x = tensors.get('x_f32')?.data as Float32Array;
      const f16 = tensors.get('x_f16')?.data as Uint16Array;
      const bf16 = tensors.get('x_bf16')?.data as Uint16Array;
      assert.equal(x.length, 1024);
      for (let i = 0; i < x.length; i++) {
        assert.equal(f32ToF16Bits(x[i] as number), f16[i], `F16 of x[${i}] = ${x[i]}`);
        assert.equal(f32ToBf16Bits(x[i] as number), bf16[i], `BF16 of x[${i}] = ${x[i]}`);
      }
    });

    it('is reproduced byte for byte when we write the same tensors and metadata', async () => {
      const { metadata, tensors } = await readSafetensors(FIXTURE);
      const shuffled = new Map([...tensors].reverse());
      const out = join(dir, 'rewrite.safetensors');
      await writeSafetensors(out, shuffled, metadata);
      assert.deepEqual(await fsp.readFile(out), await fsp.readFile(FIXTURE));
    });
  });

  describe('round trips', () => {
    const samples: Tensor[] = [
      makeTensor('F64', [2], new Float64Array([Math.PI, -1e300])),
      makeTensor('F32', [2, 3], new Float32Array([1, -2, 3.5, 0, -0, 1e-40])),
      makeTensor('F16', [3], new Uint16Array([0x3c00, 0x8000, 0x7bff])),
      makeTensor('BF16', [1, 2], new Uint16Array([0x3f80, 0xff80])),
      makeTensor('I64', [2], new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n])),
      makeTensor('I32', [3], new Int32Array([-7, 0, 7])),
      makeTensor('I16', [2], new Int16Array([-32768, 32767])),
      makeTensor('I8', [2], new Int8Array([-128, 127])),
      makeTensor('U8', [4], new Uint8Array([0, 1, 128, 255])),
      makeTensor('BOOL', [2, 2], new Uint8Array([1, 0, 0, 1])),
      makeTensor('F32', [], new Float32Array([42])),
      makeTensor('F32', [0, 3], new Float32Array(0)),
    ];
    for (const t of samples) {
      it(`preserves a ${t.dtype} tensor of shape [${t.shape.join(', ')}]`, async () => {
        const path = join(dir, `rt-${t.dtype}-${t.shape.join('x')}.safetensors`);
        await writeSafetensors(path, [['t', t]]);
        const { tensors } = await readSafetensors(path);
        const back = tensors.get('t') as Tensor;
        assert.equal(back.dtype, t.dtype);
        assert.deepEqual(back.shape, t.shape);
        assert.deepEqual(Array.from(back.data as ArrayLike<unknown>), Array.from(t.data as ArrayLike<unknown>));
      });
    }

    it('pads the header with spaces to 8 bytes and aligns every tensor to its element size', async () => {
      const path = join(dir, 'aligned.safetensors');
      await writeSafetensors(path, samples.map((t, i) => [`t${i}`, t] as const), { note: 'x' });
      const bytes = await fsp.readFile(path);
      const len = Number(bytes.readBigUInt64LE(0));
      assert.equal(len % 8, 0);
      const header = bytes.subarray(8, 8 + len).toString('utf8');
      assert.match(header, /^\{"__metadata__":\{"note":"x"\},.*\} *$/);
      const reader = await SafetensorsReader.open(path);
      try {
        for (const name of reader.names) {
          const info = reader.info(name);
          const size = (info.end - info.begin) / Math.max(1, info.shape.reduce((a, b) => a * b, 1));
          if (info.end > info.begin) assert.equal((8 + len + info.begin) % size, 0, `${name} (${info.dtype}) is aligned`);
        }
      } finally {
        await reader.close();
      }
    });
  });

  describe('lazy access', () => {
    it('reads only the header and the requested tensor, not the whole file', async () => {
      const path = join(dir, 'big.safetensors');
      const big = makeTensor('F32', [1024, 1024], new Float32Array(1024 * 1024).fill(1));
      const small = makeTensor('F32', [4], new Float32Array([1, 2, 3, 4]));
      await writeSafetensors(path, [['big', big], ['small', small]]);
      const size = (await fsp.stat(path)).size;
      const reader = await SafetensorsReader.open(path);
      try {
        const headerBytes = reader.bytesRead;
        assert.ok(headerBytes < 200, `header read is ${headerBytes} bytes`);
        const t = await reader.read('small');
        assert.deepEqual(Array.from(t.data as Float32Array), [1, 2, 3, 4]);
        assert.equal(reader.bytesRead, headerBytes + 16);
        assert.ok(reader.bytesRead < size / 1000);
      } finally {
        await reader.close();
      }
    });

    it('names the file and lists the tensors it has when asked for a missing one', async () => {
      const reader = await SafetensorsReader.open(FIXTURE);
      try {
        await assert.rejects(reader.read('nope'), (err: Error) => err.message.includes(FIXTURE) && /no tensor named nope.*ids_i64/.test(err.message));
      } finally {
        await reader.close();
      }
    });
  });

  describe('malformed files', () => {
    const good = JSON.stringify({ w: entry('F32', [2], [0, 8]) });
    const cases: Array<{ name: string; bytes: () => Uint8Array; message: RegExp }> = [
      { name: 'a file shorter than the 8-byte length prefix', bytes: () => new Uint8Array(5), message: /too short/ },
      { name: 'a header length past the end of the file', bytes: () => rawFile(good, 8, 10_000n), message: /header length 10000 runs past the end/ },
      { name: 'a header length above the 100 MB limit', bytes: () => rawFile(good, 8, 2n ** 40n), message: /exceeds the 100000000-byte limit/ },
      { name: 'a header that is not JSON', bytes: () => rawFile('{"w": {"dtype": "F32",', 8), message: /header is not valid JSON/ },
      { name: 'a header that does not start with {', bytes: () => rawFile('[1, 2]  ', 8), message: /must start with '\{'/ },
      { name: 'a truncated data section', bytes: () => rawFile(good, 5), message: /tensor w ends at data offset 8 but the data section has only 5 bytes \(truncated/ },
      { name: 'trailing bytes after the last tensor', bytes: () => rawFile(good, 12), message: /trailing bytes/ },
      {
        name: 'overlapping data_offsets',
        bytes: () => rawFile(JSON.stringify({ a: entry('F32', [2], [0, 8]), b: entry('F32', [2], [4, 12]) }), 12),
        message: /tensor b: data_offsets \[4, 12\] overlaps the previous tensor/,
      },
      {
        name: 'a gap between tensors',
        bytes: () => rawFile(JSON.stringify({ a: entry('F32', [1], [0, 4]), b: entry('F32', [1], [8, 12]) }), 12),
        message: /tensor b: .* leaves a gap/,
      },
      {
        name: 'an unknown dtype',
        bytes: () => rawFile(JSON.stringify({ w: entry('F31', [2], [0, 8]) }), 8),
        message: /tensor w: unknown dtype "F31": expected one of BOOL, U8, .*BF16/,
      },
      {
        name: 'a shape that does not match the byte length',
        bytes: () => rawFile(JSON.stringify({ w: entry('F16', [3], [0, 8]) }), 8),
        message: /tensor w: shape \[3\] × F16 \(2 bytes\) needs 6 bytes but data_offsets \[0, 8\] hold 8/,
      },
      {
        name: 'offsets that end before they begin',
        bytes: () => rawFile(JSON.stringify({ w: entry('F32', [0], [8, 0]) }), 8),
        message: /tensor w: data_offsets \[8, 0\] end before they begin/,
      },
      {
        name: 'non-string metadata',
        bytes: () => rawFile(JSON.stringify({ __metadata__: { n: 1 }, w: entry('F32', [2], [0, 8]) }), 8),
        message: /__metadata__.n must be a string/,
      },
    ];
    for (const c of cases) {
      it(`rejects ${c.name}, naming the file`, async () => {
        const path = join(dir, `bad-${c.name.replace(/\W+/g, '-')}.safetensors`);
        await fsp.writeFile(path, c.bytes());
        await assert.rejects(SafetensorsReader.open(path), (err: Error) => {
          assert.ok(err.message.startsWith(`${path}: `), err.message);
          assert.match(err.message, c.message);
          return true;
        });
      });
    }

    it('reports a file cut short after the header was read as truncated, naming the tensor', async () => {
      const path = join(dir, 'shrinks.safetensors');
      await writeSafetensors(path, [['w', makeTensor('F32', [4], new Float32Array(4))]]);
      const reader = await SafetensorsReader.open(path);
      try {
        await fsp.truncate(path, (await fsp.stat(path)).size - 4);
        await assert.rejects(reader.read('w'), /tensor w: file ended after .* \(truncated\?\)/);
      } finally {
        await reader.close();
      }
    });
  });

  describe('writing', () => {
    it('leaves the previous file intact and no temp file behind when a tensor is invalid', async () => {
      const sub = await fsp.mkdtemp(join(dir, 'atomic-'));
      const path = join(sub, 'model.safetensors');
      await writeSafetensors(path, [['ok', makeTensor('F32', [1], new Float32Array([1]))]]);
      const before = await fsp.readFile(path);
      const bad: Tensor = { dtype: 'F32', shape: [3], data: new Float32Array(2) };
      await assert.rejects(writeSafetensors(path, [['bad', bad]]), /tensor bad has 2 elements but its shape \[3\] needs 3/);
      assert.deepEqual(await fsp.readFile(path), before);
      assert.deepEqual(await fsp.readdir(sub), ['model.safetensors']);
    });

    it('rejects duplicate names and the reserved name __metadata__', async () => {
      const t = makeTensor('F32', [1], new Float32Array([1]));
      await assert.rejects(writeSafetensors(join(dir, 'dup.safetensors'), [['a', t], ['a', t]]), /duplicate tensor name a/);
      await assert.rejects(writeSafetensors(join(dir, 'meta.safetensors'), [['__metadata__', t]]), /reserved/);
    });
  });
});
