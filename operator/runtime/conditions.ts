// Status conditions per the API conventions (apimachinery's meta.SetStatusCondition): one entry
// per type, lastTransitionTime moves only when status flips, and a list that did not change
// compares equal so the status is not written again.
import { ConditionType } from '../api/v1alpha1/conditions.js';
import { semanticEqual } from './semantic.js';

/** The condition types of every Tessera kind, defined once with the CRD schemas. */
export const ConditionTypes = ConditionType;

export type ConditionStatus = 'True' | 'False' | 'Unknown';

export interface Condition {
  type: string;
  status: ConditionStatus;
  /** One CamelCase word. */
  reason: string;
  /** A sentence for humans; may be empty. */
  message: string;
  observedGeneration?: number;
  /** RFC 3339, seconds precision (metav1.Time). */
  lastTransitionTime: string;
}

export type ConditionInput = Omit<Condition, 'lastTransitionTime'>;

const REASON = /^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/;

/** metav1.Time: RFC 3339 in UTC with whole seconds. */
export function formatTime(now: Date | number): string {
  return new Date(now).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * Returns a new list with `input` set: the entry of the same type is replaced, keeping its
 * lastTransitionTime when the status did not change; other entries are untouched.
 */
export function setCondition(conditions: readonly Condition[] | undefined, input: ConditionInput, now: Date | number): Condition[] {
  if (!REASON.test(input.reason)) {
    throw new Error(`invalid condition reason ${JSON.stringify(input.reason)} for ${input.type}: expected one CamelCase word such as JobCreated`);
  }
  const list = [...(conditions ?? [])];
  const i = list.findIndex((c) => c.type === input.type);
  const existing = i >= 0 ? list[i] : undefined;
  const next: Condition = {
    type: input.type,
    status: input.status,
    reason: input.reason,
    message: input.message,
    ...(input.observedGeneration !== undefined ? { observedGeneration: input.observedGeneration } : {}),
    lastTransitionTime: existing && existing.status === input.status ? existing.lastTransitionTime : formatTime(now),
  };
  if (i >= 0) list[i] = next;
  else list.push(next);
  return list;
}

/** Sets each type that is missing to Unknown (first visit), so observers see the object was seen. */
export function initConditions(
  conditions: readonly Condition[] | undefined,
  types: readonly string[],
  now: Date | number,
  observedGeneration?: number,
  reason = 'Reconciling',
): Condition[] {
  let list = [...(conditions ?? [])];
  for (const type of types) {
    if (!list.some((c) => c.type === type)) {
      list = setCondition(list, { type, status: 'Unknown', reason, message: 'The operator has not finished its first reconcile of this object.', observedGeneration }, now);
    }
  }
  return list;
}

export function findCondition(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

export function isTrue(conditions: readonly Condition[] | undefined, type: string): boolean {
  return findCondition(conditions, type)?.status === 'True';
}

export function removeCondition(conditions: readonly Condition[] | undefined, type: string): Condition[] {
  return (conditions ?? []).filter((c) => c.type !== type);
}

/** Equal as sets keyed by type: order of entries and of keys does not matter. */
export function conditionsEqual(a: readonly Condition[] | undefined, b: readonly Condition[] | undefined): boolean {
  const x = a ?? [];
  const y = b ?? [];
  return x.length === y.length && x.every((c) => semanticEqual(c, y.find((d) => d.type === c.type)));
}
