export { IpSetCommandError, IpSetError, InvalidMemberError } from './errors.js';
export { IpSetManager, MAX_PREFIX, parseSave, type DesiredSet, type IpSetManagerOptions, type KernelSet, type SyncOptions, type SyncResult } from './ipset.js';
export { checkSetName, MAX_ELEMENTS, MAX_SET_NAME, normalizeMember, normalizeMembers, normalizeNet, SET_TYPES, type SetFamily, type SetType } from './members.js';
export { netnsRunner, spawnRunner, type CommandResult, type CommandRunner, type SpawnRunnerOptions } from './runner.js';
