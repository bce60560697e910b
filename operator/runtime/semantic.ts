// Semantic equality and copying of API objects (apimachinery's Semantic.DeepEqual and DeepCopy):
// key order does not matter and an absent field equals an undefined one, so a status is only
// written when it really changed.

export function semanticEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((item, i) => semanticEqual(item, b[i]));
  }
  if (a instanceof Date || b instanceof Date) {
    return a instanceof Date && b instanceof Date && a.getTime() === b.getTime();
  }
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  const keys = new Set([...Object.keys(ra), ...Object.keys(rb)]);
  for (const key of keys) {
    if (!semanticEqual(ra[key], rb[key])) return false;
  }
  return true;
}

/** Freezes an object graph in place so a cache entry cannot be changed by whoever reads it. */
export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value as Record<string, unknown>)) deepFreeze(child);
  }
  return value;
}

/** A mutable deep copy of a (possibly frozen) cached object, to compute a desired state from. */
export function deepCopy<T>(value: T): T {
  return structuredClone(value);
}
