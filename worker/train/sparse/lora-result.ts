// What a LoRA training run leaves behind, read out of its train model: the factors of every target
// (copies: the model's buffers go with it when it is disposed) and the PEFT adapter they make.
import { type LinearModule } from '../../formats/hf-checkpoint.js';
import { buildLoraAdapter, type LoraAdapter, loraConfig } from '../../formats/peft.js';
import { makeTensor } from '../../formats/tensor.js';
import { loraInputNames } from '../../model/llama/params.js';
import { type WeightTensor } from '../../model/llama/weights.js';
import { type TrainModel } from '../model-step.js';

export type TrainedLora = Map<string, { A: WeightTensor; B: WeightTensor; scaling: number }>;

export function trainedLora(model: TrainModel, targets: readonly string[], scaling: number): TrainedLora {
  const tensor = (name: string): WeightTensor => ({ shape: model.shapes.get(name) as number[], data: Float32Array.from(model.params.get(name) as Float32Array) });
  return new Map(targets.map((path) => {
    const names = loraInputNames(path);
    return [path, { A: tensor(names.A), B: tensor(names.B), scaling }];
  }));
}

export function loraAdapterOf(lora: TrainedLora, opts: { rank: number; alpha: number; targetModules: readonly LinearModule[]; baseModelName?: string }): LoraAdapter {
  return buildLoraAdapter(
    loraConfig({ r: opts.rank, loraAlpha: opts.alpha, targetModules: [...opts.targetModules], baseModelNameOrPath: opts.baseModelName ?? null }),
    [...lora].map(([name, m]) => ({ name, A: makeTensor('F32', [...m.A.shape], m.A.data), B: makeTensor('F32', [...m.B.shape], m.B.data) })),
  );
}
