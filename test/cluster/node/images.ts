// How the process node turns a container's image and command into a local process.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Container } from '@kubernetes/client-node';

/** The project's image: the container's command names one of its entry points. */
export const PROJECT_IMAGE_REPOSITORY = 'ghcr.io/tessera-dev/tessera';

const ENTRY_POINTS: Record<string, string> = {
  'tessera-operator': 'operator/main',
  'tessera-worker': 'worker/main',
};

export interface ImageMapping {
  /** Image repositories (no tag) that run this repository's entry points. */
  projectImages: string[];
  repoRoot: string;
}

export interface ResolvedCommand {
  argv: string[];
  /** Working directory when the container names none (the image's WORKDIR for the project image). */
  defaultCwd: string | undefined;
  /** Folder that stands in for the image's files; it must stay visible whatever the volumes shadow. */
  imageRoot: string | undefined;
}

export class UnsupportedImageError extends Error {
  constructor(readonly reason: string, message: string) {
    super(message);
  }
}

export function imageRepository(image: string): string {
  const noDigest = image.split('@')[0] ?? image;
  const lastSlash = noDigest.lastIndexOf('/');
  const lastColon = noDigest.lastIndexOf(':');
  return lastColon > lastSlash ? noDigest.slice(0, lastColon) : noDigest;
}

function entryPoint(mapping: ImageMapping, name: string): string[] | undefined {
  const module = ENTRY_POINTS[name];
  if (!module) return undefined;
  const built = join(mapping.repoRoot, 'dist', `${module}.js`);
  // Prefer the compiled entry point, as the image has; from a source checkout run TypeScript directly.
  if (existsSync(built)) return [process.execPath, built];
  return [process.execPath, '--import', 'tsx', join(mapping.repoRoot, `${module}.ts`)];
}

export function resolveCommand(mapping: ImageMapping, container: V1Container): ResolvedCommand {
  const image = container.image ?? '';
  const command = container.command ?? [];
  const args = container.args ?? [];
  if (mapping.projectImages.includes(imageRepository(image))) {
    // The image's default command is the operator (see Dockerfile CMD).
    const [first = 'tessera-operator', ...rest] = command.length > 0 ? command : ['tessera-operator'];
    const base = entryPoint(mapping, first.split('/').pop() ?? first);
    if (!base) {
      throw new UnsupportedImageError('UnknownEntryPoint', `image ${image} has no entry point ${JSON.stringify(first)}: expected one of ${Object.keys(ENTRY_POINTS).join(', ')}`);
    }
    return { argv: [...base, ...rest, ...args], defaultCwd: mapping.repoRoot, imageRoot: mapping.repoRoot };
  }
  if (command.length === 0) {
    throw new UnsupportedImageError(
      'UnsupportedImage',
      `the process node cannot run image ${JSON.stringify(image)} without an explicit command: it runs only ${mapping.projectImages.join(', ')} images, or containers that name a command available on the host`,
    );
  }
  return { argv: [...command, ...args], defaultCwd: undefined, imageRoot: undefined };
}
