export * from './common.js';
export * from './service-policy.js';
export * from './department-policy.js';
export * from './vm-filter.js';
export * from './kinds.js';
export { withCel, type CelRule } from './cel.js';
export * from './crd.js';
export * from './manifests.js';
