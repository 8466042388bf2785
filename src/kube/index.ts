export * from './client.js';
export * from './resources.js';
export * from './informer.js';
export * from './workqueue.js';
export * from './conditions.js';
export * from './status.js';
export * from './leader.js';
export * from './events.js';
