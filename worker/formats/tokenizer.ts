// Tokenizers in the Hugging Face format: tokenizer.json (+ tokenizer_config.json), loaded and
// run by @huggingface/tokenizers, and written from a BPE we trained ourselves.

import { Tokenizer } from '@huggingface/tokenizers';
import { join } from 'node:path';
import { fileExists, readJsonFile, writeJsonAtomic } from './atomic-file.js';
import type { TrainedBpe } from './bpe-trainer.js';

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

export interface EncodeOptions {
  /** Add the post-processor's special tokens (e.g. a leading <s>); default true. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  skipSpecialTokens?: boolean;
}

/** Our face of a tokenizer: plain id arrays in and out, special token ids resolved once. */
export class TextTokenizer {
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;
  readonly unkTokenId: number | null;

  private constructor(
    private readonly inner: Tokenizer,
    readonly config: Record<string, unknown>,
    readonly source: string,
  ) {
    const id = (key: string): number | null => {
      const v = config[key];
      const content = typeof v === 'string' ? v : isRecord(v) && typeof v.content === 'string' ? v.content : null;
      return content === null ? null : (inner.token_to_id(content) ?? null);
    };
    this.bosTokenId = id('bos_token');
    this.eosTokenId = id('eos_token');
    this.padTokenId = id('pad_token');
    this.unkTokenId = id('unk_token');
  }

  /** From parsed tokenizer.json and tokenizer_config.json contents. */
  static fromJson(tokenizerJson: unknown, config: unknown = {}, source = 'tokenizer.json'): TextTokenizer {
    if (!isRecord(tokenizerJson) || !isRecord(tokenizerJson.model)) {
      throw new Error(`${source}: not a tokenizer.json (expected an object with a "model" object)`);
    }
    const cfg = isRecord(config) ? { ...config } : {};
    // transformers defaults this to true for many tokenizers, which rewrites " ." to "."
    // and breaks decode(encode(x)) == x; keep it only when the config asks for it.
    cfg.clean_up_tokenization_spaces ??= false;
    let inner: Tokenizer;
    try {
      inner = new Tokenizer(tokenizerJson, cfg);
    } catch (err) {
      throw new Error(`${source}: cannot build the tokenizer (${(err as Error).message})`);
    }
    return new TextTokenizer(inner, cfg, source);
  }

  /** Load tokenizer.json and, when present, tokenizer_config.json from a directory. */
  static async load(dir: string): Promise<TextTokenizer> {
    const path = join(dir, 'tokenizer.json');
    const configPath = join(dir, 'tokenizer_config.json');
    const config = (await fileExists(configPath)) ? await readJsonFile(configPath) : {};
    if (!isRecord(config)) throw new Error(`${configPath}: must be a JSON object`);
    return TextTokenizer.fromJson(await readJsonFile(path), config, path);
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    return this.inner.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    return this.inner.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? false });
  }

  tokenize(text: string): string[] {
    return this.inner.tokenize(text, { add_special_tokens: false });
  }

  tokenToId(token: string): number | undefined {
    return this.inner.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.inner.id_to_token(id);
  }

  /** Vocabulary size including added tokens (the embedding rows a model needs). */
  get vocabSize(): number {
    return this.inner.get_vocab(true).size;
  }
}

export interface BpeTokenizerOptions {
  bosToken?: string;
  eosToken?: string;
  unkToken?: string;
  padToken?: string;
  /** Prepend bosToken when encoding with special tokens, as Llama does (default true). */
  addBosToken?: boolean;
  modelMaxLength?: number;
}

function specialId(trained: TrainedBpe, token: string | undefined, role: string): number | undefined {
  if (token === undefined) return undefined;
  const id = trained.vocab.get(token);
  if (id === undefined || !trained.specialTokens.includes(token)) {
    throw new Error(`${role} ${JSON.stringify(token)} is not one of the trained special tokens: ${trained.specialTokens.join(', ')}`);
  }
  return id;
}

/** A standard tokenizer.json (BPE model, ByteLevel pre-tokenizer and decoder) for a trained BPE. */
export function bpeTokenizerJson(trained: TrainedBpe, opts: BpeTokenizerOptions = {}): Record<string, unknown> {
  const bos = opts.bosToken ?? '<s>';
  const bosId = specialId(trained, bos, 'bosToken') as number;
  const byteLevel = { add_prefix_space: false, trim_offsets: true, use_regex: true };
  const postProcessor = (opts.addBosToken ?? true)
    ? {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
        pair: [
          { SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
          { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } },
        ],
        special_tokens: { [bos]: { id: bos, ids: [bosId], tokens: [bos] } },
      }
    : { type: 'ByteLevel', ...byteLevel };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: trained.specialTokens.map((content) => ({
      id: trained.vocab.get(content),
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', ...byteLevel },
    post_processor: postProcessor,
    decoder: { type: 'ByteLevel', ...byteLevel },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(trained.vocab),
      merges: trained.merges,
    },
  };
}

export function bpeTokenizerConfig(trained: TrainedBpe, opts: BpeTokenizerOptions = {}): Record<string, unknown> {
  const roles: Array<[string, string | undefined]> = [
    ['bos_token', opts.bosToken ?? '<s>'],
    ['eos_token', opts.eosToken ?? '</s>'],
    ['unk_token', opts.unkToken ?? (trained.specialTokens.includes('<unk>') ? '<unk>' : undefined)],
    ['pad_token', opts.padToken ?? (trained.specialTokens.includes('<pad>') ? '<pad>' : undefined)],
  ];
  const out: Record<string, unknown> = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    add_bos_token: opts.addBosToken ?? true,
    add_eos_token: false,
    clean_up_tokenization_spaces: false,
    model_max_length: opts.modelMaxLength ?? 2048,
  };
  for (const [role, token] of roles) {
    specialId(trained, token, role);
    if (token !== undefined) out[role] = token;
  }
  return out;
}

/** Write tokenizer.json and tokenizer_config.json for a trained BPE into `dir`. */
export async function writeBpeTokenizer(dir: string, trained: TrainedBpe, opts: BpeTokenizerOptions = {}): Promise<void> {
  const config = bpeTokenizerConfig(trained, opts);
  await writeJsonAtomic(join(dir, 'tokenizer.json'), bpeTokenizerJson(trained, opts));
  await writeJsonAtomic(join(dir, 'tokenizer_config.json'), config);
}
