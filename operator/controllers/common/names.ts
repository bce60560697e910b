// Child object names: readable, unique per run, within Kubernetes' 63-character label limit.
export function childName(owner: string, suffix: string): string {
  const tail = `-${suffix}`;
  return `${owner.slice(0, 63 - tail.length).replace(/[-.]+$/, '')}${tail}`;
}
