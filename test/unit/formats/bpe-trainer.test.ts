import assert from 'node:assert/strict';
import { promises as fsp, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BYTE_TO_CHAR, CHAR_TO_BYTE } from '../../../worker/formats/byte-level.js';
import { trainByteLevelBpe } from '../../../worker/formats/bpe-trainer.js';
import { TextTokenizer, bpeTokenizerJson, writeBpeTokenizer } from '../../../worker/formats/tokenizer.js';

const SENTENCES = [
  'The whale swam under the ship, and the sailors watched the whale in silence.',
  "Call me Ishmael. Some years ago, never mind how long precisely, I thought I'd sail.",
  'The captain said the sea was calm; the sailors did not believe the captain.',
  'Numbers like 1842 and 3.14159 appear too, with punctuation: (parentheses), "quotes" & more!',
];

/** Seeded text over a Zipf-distributed pool of syllable words: ~`bytes` long. */
function syntheticCorpus(bytes: number, seed = 1): string {
  let s = seed;
  const rand = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
  const syllables = ['ka', 'lo', 'mi', 'ne', 'ru', 'sa', 'te', 'vi', 'zo', 'pra', 'sti', 'qu', 'ex', 'on', 'an'];
  const pool = Array.from({ length: 3000 }, () => Array.from({ length: 1 + Math.floor(rand() * 4) }, () => syllables[Math.floor(rand() * syllables.length)]).join(''));
  const parts: string[] = [];
  let size = 0;
  while (size < bytes) {
    const word = pool[Math.floor(pool.length * rand() ** 3)] as string;
    const sep = rand() < 0.08 ? '.\n' : ' ';
    parts.push(word, sep);
    size += word.length + sep.length;
  }
  return parts.join('');
}

describe('byte-level BPE trainer', () => {
  let dir: string;
  before(async () => {
    dir = await fsp.mkdtemp(join(tmpdir(), 'tessera-bpe-'));
  });
  after(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('maps all 256 bytes to distinct printable characters, as GPT-2 does', () => {
    assert.equal(new Set(BYTE_TO_CHAR).size, 256);
    assert.equal(BYTE_TO_CHAR[0x20], 'Ġ');
    assert.equal(BYTE_TO_CHAR[0x0a], 'Ċ');
    assert.equal(BYTE_TO_CHAR[0x41], 'A');
    assert.equal(CHAR_TO_BYTE.get('Ġ'), 0x20);
  });

  it('reaches the target vocabulary size with special tokens first and the byte alphabet next', () => {
    const trained = trainByteLevelBpe([syntheticCorpus(50_000)], { vocabSize: 500 });
    assert.equal(trained.vocab.size, 500);
    assert.deepEqual([...trained.vocab.keys()].slice(0, 5), ['<unk>', '<s>', '</s>', '<pad>', '!']);
    assert.equal(trained.merges.length, 500 - 4 - 256);
    const ids = [...trained.vocab.values()];
    assert.deepEqual(ids, ids.map((_, i) => i));
  });

  it('turns frequent words into single tokens', async () => {
    const corpus = Array.from({ length: 200 }, (_, i) => SENTENCES[i % SENTENCES.length] as string);
    const trained = trainByteLevelBpe(corpus, { vocabSize: 400 });
    for (const word of ['Ġwhale', 'Ġsailors', 'Ġcaptain', 'The']) assert.ok(trained.vocab.has(word), word);
    const tok = TextTokenizer.fromJson(bpeTokenizerJson(trained), {});
    assert.deepEqual(tok.tokenize(' whale captain'), ['Ġwhale', 'Ġcaptain']);
  });

  it('learns the same merges, in the same order, as the Rust tokenizers BpeTrainer', () => {
    const fixture = (name: string): string => readFileSync(fileURLToPath(new URL(`../../fixtures/formats/${name}`, import.meta.url)), 'utf8');
    const reference = JSON.parse(fixture('bpe-reference-merges.json')) as { vocab_size: number; merges: Array<[string, string]> };
    const trained = trainByteLevelBpe([fixture('bpe-corpus.txt')], { vocabSize: 600 });
    assert.equal(trained.vocab.size, reference.vocab_size);
    assert.deepEqual(trained.merges, reference.merges);
  });

  it('stops early when no pair is frequent enough', () => {
    // Words: "abc", " abc", " xyz"; only a+b and then ab+c occur twice.
    const trained = trainByteLevelBpe(['abc abc xyz'], { vocabSize: 1000, minFrequency: 2 });
    assert.deepEqual(trained.merges, [['a', 'b'], ['ab', 'c']]);
    assert.equal(trained.vocab.size, 4 + 256 + 2);
  });

  it('is deterministic', () => {
    const text = syntheticCorpus(20_000, 3);
    assert.deepEqual(trainByteLevelBpe([text], { vocabSize: 400 }).merges, trainByteLevelBpe([text], { vocabSize: 400 }).merges);
  });

  it('rejects a vocabulary too small for the special tokens and bytes', () => {
    assert.throws(() => trainByteLevelBpe(['x'], { vocabSize: 100 }), /vocabSize 100 must be an integer in \[260, /);
  });

  it('trains 1 MB of text to a 2k vocabulary in seconds', function () {
    this.timeout(30_000);
    const text = syntheticCorpus(1_000_000);
    const start = performance.now();
    const trained = trainByteLevelBpe([text], { vocabSize: 2048 });
    const ms = performance.now() - start;
    assert.equal(trained.vocab.size, 2048);
    assert.ok(ms < 10_000, `took ${ms.toFixed(0)} ms`);
  });

  describe('the written tokenizer.json', () => {
    let tok: TextTokenizer;
    before(async () => {
      const corpus = [...SENTENCES, syntheticCorpus(30_000), 'héllo wörld — naïve café 東京 🙂👍🏽'];
      await writeBpeTokenizer(dir, trainByteLevelBpe(corpus, { vocabSize: 600 }));
      tok = await TextTokenizer.load(dir);
    });

    it('loads in @huggingface/tokenizers with the special token ids resolved', () => {
      assert.equal(tok.unkTokenId, 0);
      assert.equal(tok.bosTokenId, 1);
      assert.equal(tok.eosTokenId, 2);
      assert.equal(tok.padTokenId, 3);
      assert.equal(tok.vocabSize, 600);
    });

    it('prepends <s> when special tokens are added, and not otherwise', () => {
      assert.equal(tok.encode('the whale')[0], 1);
      assert.notEqual(tok.encode('the whale', { addSpecialTokens: false })[0], 1);
    });

    const texts = [
      'The whale swam under the ship.',
      '  leading and trailing spaces  ',
      'tabs\tand\nnewlines\r\n and  double  spaces . , ! ?',
      "don't won't it's we'll they're I'd",
      'emoji 🙂👍🏽👨‍👩‍👧 and flags 🇯🇵',
      'accents: héllo wörld naïve café, CJK: 東京タワー, RTL: שלום مرحبا',
      'math: ∑ x² ≤ ∞, code: fn(x) => x * 2; // done',
      'unseen bytes: \u0000\u0001\u007f and a lone combining mark \u0301',
    ];
    for (const text of texts) {
      it(`round-trips ${JSON.stringify(text.slice(0, 24))}… through encode and decode`, () => {
        assert.equal(tok.decode(tok.encode(text, { addSpecialTokens: false })), text);
        assert.equal(tok.decode(tok.encode(text), { skipSpecialTokens: true }), text);
      });
    }

    it('never produces the unknown token for arbitrary UTF-8', () => {
      const ids = tok.encode('𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ☃ \u{10FFFD}', { addSpecialTokens: false });
      assert.ok(!ids.includes(0));
    });
  });
});
