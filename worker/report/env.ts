// The reporter's settings from the pod's environment, as the operator renders them into
// the worker's container spec.
import type { ObjectRef } from '../../operator/status/wire.js';

export interface ReporterEnv {
  address: string;
  caFile: string | undefined;
  tokenFile: string | undefined;
  object: ObjectRef;
  pod: string;
}

/** Reads TESSERA_STATUS_ADDRESS, TESSERA_CA_FILE, TESSERA_TOKEN_FILE, TESSERA_OBJECT_* and POD_NAME. */
export function reporterEnv(env: NodeJS.ProcessEnv = process.env): ReporterEnv {
  const required = (name: string): string => {
    const value = env[name];
    if (!value) throw new Error(`environment variable ${name} is not set; the status reporter needs it (the operator sets it on worker pods)`);
    return value;
  };
  const generationText = env.TESSERA_OBJECT_GENERATION ?? '0';
  const generation = Number(generationText);
  if (!Number.isSafeInteger(generation) || generation < 0) {
    throw new Error(`invalid TESSERA_OBJECT_GENERATION ${JSON.stringify(generationText)}: expected a non-negative integer`);
  }
  return {
    address: required('TESSERA_STATUS_ADDRESS'),
    caFile: env.TESSERA_CA_FILE || undefined,
    tokenFile: env.TESSERA_TOKEN_FILE || undefined,
    object: {
      apiVersion: env.TESSERA_OBJECT_API_VERSION || 'tessera.dev/v1alpha1',
      kind: required('TESSERA_OBJECT_KIND'),
      namespace: required('TESSERA_OBJECT_NAMESPACE'),
      name: required('TESSERA_OBJECT_NAME'),
      uid: required('TESSERA_OBJECT_UID'),
      generation,
    },
    pod: required('POD_NAME'),
  };
}
