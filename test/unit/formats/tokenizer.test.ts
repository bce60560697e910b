import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { trainByteLevelBpe } from '../../../worker/formats/bpe-trainer.js';
import { TextTokenizer, bpeTokenizerConfig } from '../../../worker/formats/tokenizer.js';

const METASPACE = fileURLToPath(new URL('../../fixtures/formats/tokenizer-metaspace', import.meta.url));

describe('HF tokenizers', () => {
  describe('a Llama-style (Metaspace, byte fallback) tokenizer.json', () => {
    let tok: TextTokenizer;
    before(async () => {
      tok = await TextTokenizer.load(METASPACE);
    });

    // Expected ids come from the Rust `tokenizers` 0.23.3 on the same file.
    const cases: Array<[string, number[], string]> = [
      ['hello world', [1, 18, 21], 'hello world'],
      ['hello world!', [1, 18, 21, 3], 'hello world!'],
      ['hello wo', [1, 18, 14, 8], 'hello wo'],
      ['hey', [1, 12, 6, 0], 'he'],
    ];
    for (const [text, ids, decoded] of cases) {
      it(`encodes ${JSON.stringify(text)} as the reference implementation does`, () => {
        assert.deepEqual(tok.encode(text), ids);
        assert.equal(tok.decode(ids, { skipSpecialTokens: true }), decoded);
      });
    }

    it('resolves special tokens given as AddedToken objects in tokenizer_config.json', () => {
      assert.equal(tok.bosTokenId, 1);
      assert.equal(tok.eosTokenId, 2);
      assert.equal(tok.unkTokenId, 0);
      assert.equal(tok.padTokenId, null);
      assert.equal(tok.vocabSize, 22);
    });
  });

  it('names the missing tokenizer.json', async () => {
    const dir = await fsp.mkdtemp(join(tmpdir(), 'tessera-tok-'));
    try {
      await assert.rejects(TextTokenizer.load(dir), new RegExp(`${join(dir, 'tokenizer.json')}: file not found`));
      await fsp.writeFile(join(dir, 'tokenizer.json'), '{"version": "1.0"}');
      await assert.rejects(TextTokenizer.load(dir), /tokenizer.json: not a tokenizer.json \(expected an object with a "model" object\)/);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a role token that is not one of the trained special tokens', () => {
    const trained = trainByteLevelBpe(['a b c'], { vocabSize: 262, specialTokens: ['<s>', '</s>'] });
    assert.throws(() => bpeTokenizerConfig(trained, { padToken: '<pad>' }), /pad_token "<pad>" is not one of the trained special tokens: <s>, <\/s>/);
  });
});
