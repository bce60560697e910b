// adapter_config.json of a PEFT LoRA adapter, and the rules PEFT applies with it: which
// modules target_modules selects, and each module's rank, alpha and scaling
// (rank_pattern / alpha_pattern override r / lora_alpha; rsLoRA scales by alpha/sqrt(r)).

export type LoraBias = 'none' | 'all' | 'lora_only';

export interface LoraConfig {
  peftType: 'LORA';
  taskType: 'CAUSAL_LM';
  r: number;
  loraAlpha: number;
  /** Module name suffixes, or one regular expression that must match the full module name. */
  targetModules: string[] | string;
  loraDropout: number;
  bias: LoraBias;
  baseModelNameOrPath: string | null;
  fanInFanOut: boolean;
  rankPattern: Record<string, number>;
  alphaPattern: Record<string, number>;
  useRslora: boolean;
  /** Keys we do not interpret, written back unchanged. */
  extra: Record<string, unknown>;
}

const CONSUMED = new Set([
  'peft_type', 'task_type', 'r', 'lora_alpha', 'target_modules', 'lora_dropout', 'bias',
  'base_model_name_or_path', 'fan_in_fan_out', 'rank_pattern', 'alpha_pattern', 'use_rslora', 'use_dora',
]);

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function numberMap(raw: unknown, key: string, file: string, integer: boolean): Record<string, number> {
  if (raw === undefined || raw === null) return {};
  if (!isRecord(raw)) throw new Error(`${file}: ${key} must be an object of module pattern → number, got ${JSON.stringify(raw)}`);
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v !== 'number' || !(v > 0) || (integer && !Number.isInteger(v))) {
      throw new Error(`${file}: ${key}[${JSON.stringify(k)}] must be a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(v)}`);
    }
    out[k] = v;
  }
  return out;
}

export function parseLoraConfig(raw: unknown, file = 'adapter_config.json'): LoraConfig {
  if (!isRecord(raw)) throw new Error(`${file}: must be a JSON object`);
  const fail = (msg: string): never => {
    throw new Error(`${file}: ${msg}`);
  };
  if (raw.peft_type !== 'LORA') fail(`peft_type ${JSON.stringify(raw.peft_type)} is not supported: expected LORA`);
  const taskType = raw.task_type ?? 'CAUSAL_LM';
  if (taskType !== 'CAUSAL_LM') fail(`task_type ${JSON.stringify(taskType)} is not supported: expected CAUSAL_LM`);
  if (raw.use_dora === true) fail('use_dora is true: DoRA adapters (magnitude vectors) are not supported, only plain LoRA');
  const r = raw.r;
  if (typeof r !== 'number' || !Number.isInteger(r) || r <= 0) fail(`r must be a positive integer, got ${JSON.stringify(r)}`);
  const alpha = raw.lora_alpha ?? 8;
  if (typeof alpha !== 'number' || !(alpha > 0)) fail(`lora_alpha must be a positive number, got ${JSON.stringify(alpha)}`);
  const targets = raw.target_modules;
  const targetsOk = typeof targets === 'string' || (Array.isArray(targets) && targets.length > 0 && targets.every((t) => typeof t === 'string'));
  if (!targetsOk) fail(`target_modules must be a list of module names or a regex string, got ${JSON.stringify(targets)}`);
  if (typeof targets === 'string' && targets !== 'all-linear') compileRegex(targets, 'target_modules', file);
  const dropout = raw.lora_dropout ?? 0;
  if (typeof dropout !== 'number' || dropout < 0 || dropout >= 1) fail(`lora_dropout must be in [0, 1), got ${JSON.stringify(dropout)}`);
  const bias = raw.bias ?? 'none';
  if (bias !== 'none') {
    fail(`bias ${JSON.stringify(bias)} is not supported: expected none (adapters with trained biases are not supported)`);
  }
  const base = raw.base_model_name_or_path ?? null;
  if (base !== null && typeof base !== 'string') fail(`base_model_name_or_path must be a string, got ${JSON.stringify(base)}`);
  const bool = (key: string): boolean => {
    const v = raw[key] ?? false;
    if (typeof v !== 'boolean') fail(`${key} must be true or false, got ${JSON.stringify(v)}`);
    return v as boolean;
  };
  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) if (!CONSUMED.has(k)) extra[k] = v;
  return {
    peftType: 'LORA',
    taskType: 'CAUSAL_LM',
    r: r as number,
    loraAlpha: alpha as number,
    targetModules: Array.isArray(targets) ? [...(targets as string[])] : (targets as string),
    loraDropout: dropout as number,
    bias: 'none',
    baseModelNameOrPath: base as string | null,
    fanInFanOut: bool('fan_in_fan_out'),
    rankPattern: numberMap(raw.rank_pattern, 'rank_pattern', file, true),
    alphaPattern: numberMap(raw.alpha_pattern, 'alpha_pattern', file, false),
    useRslora: bool('use_rslora'),
    extra,
  };
}

export function toLoraConfigJson(c: LoraConfig): Record<string, unknown> {
  return {
    ...c.extra,
    peft_type: 'LORA',
    task_type: c.taskType,
    r: c.r,
    lora_alpha: c.loraAlpha,
    target_modules: c.targetModules,
    lora_dropout: c.loraDropout,
    bias: c.bias,
    base_model_name_or_path: c.baseModelNameOrPath,
    fan_in_fan_out: c.fanInFanOut,
    rank_pattern: c.rankPattern,
    alpha_pattern: c.alphaPattern,
    use_rslora: c.useRslora,
    use_dora: false,
  };
}

/** A LoraConfig with PEFT's defaults for everything not given. */
export function loraConfig(opts: Partial<LoraConfig> & Pick<LoraConfig, 'r' | 'targetModules'>): LoraConfig {
  return {
    peftType: 'LORA',
    taskType: 'CAUSAL_LM',
    loraAlpha: 8,
    loraDropout: 0,
    bias: 'none',
    baseModelNameOrPath: null,
    fanInFanOut: false,
    rankPattern: {},
    alphaPattern: {},
    useRslora: false,
    extra: {},
    ...opts,
  };
}

function compileRegex(source: string, key: string, file: string): RegExp {
  try {
    return new RegExp(source);
  } catch (err) {
    throw new Error(`${file}: ${key} ${JSON.stringify(source)} is not a valid regular expression (${(err as Error).message})`);
  }
}

const ALL_LINEAR = /\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$/;

/** PEFT's check_target_module_exists for a module path like model.layers.0.self_attn.q_proj. */
export function targetsModule(c: LoraConfig, modulePath: string): boolean {
  if (typeof c.targetModules === 'string') {
    if (c.targetModules === 'all-linear') return ALL_LINEAR.test(modulePath);
    return compileRegex(`^(?:${c.targetModules})$`, 'target_modules', 'adapter_config.json').test(modulePath);
  }
  return c.targetModules.some((t) => modulePath === t || modulePath.endsWith(`.${t}`));
}

/** PEFT's get_pattern_key: an exact key wins, else the first pattern matching a name suffix. */
function patternValue(patterns: Record<string, number>, modulePath: string): number | undefined {
  if (Object.hasOwn(patterns, modulePath)) return patterns[modulePath];
  for (const [key, value] of Object.entries(patterns)) {
    if (compileRegex(`^(?:.*\\.)?(?:${key})$`, 'pattern', 'adapter_config.json').test(modulePath)) return value;
  }
  return undefined;
}

export interface ModuleHyper {
  rank: number;
  alpha: number;
  scaling: number;
}

/** The rank, alpha and effective scaling PEFT gives one module under this config. */
export function moduleHyper(c: LoraConfig, modulePath: string): ModuleHyper {
  const rank = patternValue(c.rankPattern, modulePath) ?? c.r;
  const alpha = patternValue(c.alphaPattern, modulePath) ?? c.loraAlpha;
  return { rank, alpha, scaling: c.useRslora ? alpha / Math.sqrt(rank) : alpha / rank };
}
