// The controller runtime's public surface: reconcilers import from here.
export { applyObject, FIELD_MANAGER, patchStatus, statusUnchanged } from './apply.js';
export { formatMicroTime, systemClock, type Clock, type TimerHandle } from './clock.js';
export { conditionsEqual, ConditionTypes, findCondition, formatTime, initConditions, isTrue, removeCondition, setCondition, type Condition, type ConditionInput, type ConditionStatus } from './conditions.js';
export { Controller, controllerOwnerKeys, generationChanged, isTerminal, splitKey, TerminalError, type ReconcileContext, type ReconcileFn, type ReconcileRequest, type Result, type UpdatePredicate } from './controller.js';
export { EventRecorder, REPORTING_CONTROLLER, type EventType } from './events.js';
export { addFinalizer, hasFinalizer, removeFinalizer } from './finalizers.js';
export { objectKey, SharedInformer, type EventHandlers, type Informer, type InformerTarget, type Kind } from './informer.js';
export { LeaderElector, type LeaderCallbacks, type LeaderElectionConfig } from './leader-election.js';
export { createLogger, reconcileLogger, silentLogger, type LogLevel } from './log.js';
export { Manager, type BindAddress, type ManagerOptions, type NewControllerOptions } from './manager.js';
export { RuntimeMetrics } from './metrics.js';
export { RestClient, statusCode } from './rest.js';
export { deepCopy, deepFreeze, semanticEqual } from './semantic.js';
export { WorkQueue, defaultControllerRateLimiter, type RateLimiter } from './workqueue.js';
