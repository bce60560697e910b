// The hub uses the runtime's injectable clock; re-exported so the hub's modules and the worker's
// reporter keep one import path.
export { systemClock, type Clock, type TimerHandle } from '../runtime/clock.js';
