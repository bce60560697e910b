// What a loram run reads besides the common train inputs: spec.loram with the CRD's defaults,
// checked against the model before any compute (a bad value is SpecInvalid, not a crash to
// retry); calibration windows for Taylor importance and SparseGPT (random pruning needs none);
// the alignment text, tokenized.
import type { Logger } from 'pino';
import { type SparseFineTuneSpec } from '../../operator/api/v1alpha1/index.js';
import { readDataset, tokenizeDataset } from '../data/datasets.js';
import { LINEAR_MODULES, linearShape } from '../formats/hf-checkpoint.js';
import { checkLoramSettings, type LoramSettings } from '../train/sparse/loram.js';
import { calibrationWindows, locate, type TrainInputs } from './train-inputs.js';
import { WorkloadError } from './workload.js';

/** spec.loram when the spec leaves it out: the CRD's defaults. */
export const LORAM_DEFAULTS = { pruning: 'structured', prunePercent: 50, keepFirstLayers: 2, keepLastLayers: 1 } as const;

export interface LoramInputs {
  settings: LoramSettings;
  /** Absent for random pruning. */
  calibration?: number[][];
}

export async function loadLoramInputs(spec: SparseFineTuneSpec, inputs: TrainInputs, specFile: string, locations: Record<string, string>, log: Logger): Promise<LoramInputs> {
  const s = spec.loram ?? LORAM_DEFAULTS;
  const c = inputs.model.config;
  const settings: LoramSettings = { pruning: s.pruning, prunePercent: s.prunePercent, keepFirstLayers: s.keepFirstLayers, keepLastLayers: s.keepLastLayers };
  try {
    checkLoramSettings(c, settings);
  } catch (err) {
    throw new WorkloadError('SpecInvalid', `spec file ${specFile}: spec.${(err as Error).message}`);
  }
  if (settings.pruning === 'semi') {
    for (const m of LINEAR_MODULES) {
      const cols = linearShape(c, m)[1];
      if (cols % 4 !== 0) throw new WorkloadError('SpecInvalid', `spec file ${specFile}: spec.loram.pruning semi (2:4) cannot tile ${m}, which has ${cols} inputs: use structured or unstructured`);
    }
  }
  const tokenizer = inputs.model.tokenizer;
  if (!tokenizer) throw new WorkloadError('ModelUnreadable', `the base model ${spec.baseModel.uri} has no tokenizer.json, which text datasets need`);
  const tokens = async (uri: string, field: string, format?: 'jsonl' | 'text'): Promise<number[]> => {
    const file = locate(uri, locations, specFile, field);
    try {
      const ds = await readDataset(file, { ...(format ? { format } : {}), textField: spec.dataset.textField });
      return tokenizeDataset(ds, (text) => tokenizer.encode(text)).flat();
    } catch (err) {
      throw new WorkloadError('DatasetUnreadable', `${field} ${uri}: ${(err as Error).message}`, false, { cause: err });
    }
  };

  let calibration: number[][] | undefined;
  if (settings.pruning !== 'random') {
    const cal = spec.calibration ?? { samples: 128, sequenceLength: 512 };
    const source = cal.uri ? await tokens(cal.uri, 'spec.calibration.uri', spec.dataset.format) : inputs.train;
    const length = Math.min(cal.sequenceLength, c.maxPositionEmbeddings, source.length);
    if (length < 2) throw new WorkloadError('DatasetTooSmall', `the calibration data (${cal.uri ?? spec.dataset.uri}) has ${source.length} tokens: pruning needs at least 2`);
    calibration = calibrationWindows(source, cal.samples, length, spec.training.seed);
    log.info({ samples: calibration.length, sequenceLength: length, from: cal.uri ?? spec.dataset.uri }, 'calibration windows');
  }
  const align = spec.loram?.align;
  if (align) {
    // General text is often a plain corpus even when the task data is JSON Lines: the format follows the file's extension.
    const text = await tokens(align.uri, 'spec.loram.align.uri');
    if (text.length < inputs.sequenceLength + 1) {
      throw new WorkloadError('DatasetTooSmall', `spec.loram.align.uri ${align.uri} gives ${text.length} tokens: alignment windows of ${inputs.sequenceLength} tokens need at least ${inputs.sequenceLength + 1}`);
    }
    const learningRate = Number(align.learningRate);
    if (!(learningRate > 0 && learningRate < 1)) throw new WorkloadError('SpecInvalid', `spec file ${specFile}: spec.loram.align.learningRate must be a decimal in (0, 1), e.g. "5e-5", not ${align.learningRate}`);
    settings.align = { tokens: text, steps: align.steps, learningRate };
    log.info({ tokens: text.length, steps: align.steps, learningRate }, 'alignment text');
  }
  return { settings, ...(calibration ? { calibration } : {}) };
}
