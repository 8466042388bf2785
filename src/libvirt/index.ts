export { LibvirtClient } from './client.js';
export {
  LibvirtError,
  LibvirtDisconnectedError,
  LibvirtTimeoutError,
  LibvirtUnsupportedVersionError,
  NwFilterNotKeptError,
  isNotFound,
  isInUse,
  isUuidMismatch,
  isLoop,
  isInvalidXml,
  isDisconnected,
  isNotKept,
  isUnknownProcedure,
} from './errors.js';
export type { DefineOptions } from './client.js';
export { filterDifferences } from './readback.js';
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
export { ErrorCode, ErrorDomain, MIN_LIBVIRT_VERSION } from './protocol.js';
export { interfaceTarget } from './client.js';
