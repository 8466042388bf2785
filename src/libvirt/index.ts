export { LibvirtClient } from './client.js';
export { LibvirtError, LibvirtDisconnectedError, LibvirtTimeoutError, isNotFound, isInUse, isUuidMismatch, isLoop, isDisconnected } from './errors.js';
export type { NwFilterRef, DomainRef, DomainSummary, NwFilterBinding, DomainLifecycleEvent, DomainEventName, LibvirtClientOptions } from './types.js';
export { XdrReader, XdrWriter, XdrError } from './xdr.js';
export { ErrorCode } from './protocol.js';
