export { LibvirtClient } from './client.js';
export { LibvirtError, LibvirtDisconnectedError, LibvirtTimeoutError, isNotFound, isInUse, isUuidMismatch, isLoop, isInvalidXml, isDisconnected } from './errors.js';
export type {
  NwFilterRef,
  DomainRef,
  DomainSummary,
  NwFilterBinding,
  DomainLifecycleEvent,
  DomainStateEvent,
  DomainDeviceEvent,
  DomainEventName,
  DomainStateEventName,
  DomainDeviceEventName,
  LibvirtClientOptions,
  LibvirtApi,
  DeviceTarget,
  DomainStateName,
} from './types.js';
export { XdrReader, XdrWriter, XdrError } from './xdr.js';
export { ErrorCode, ErrorDomain } from './protocol.js';
export { interfaceTarget } from './client.js';
