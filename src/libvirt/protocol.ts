// Constants of libvirt's remote protocol (src/remote/remote_protocol.x, src/rpc/virnetprotocol.x).

export const REMOTE_PROGRAM = 0x20008086;
export const REMOTE_PROTOCOL_VERSION = 1;
/** Largest packet libvirt sends or accepts (VIR_NET_MESSAGE_MAX). */
export const MAX_PACKET = 32 * 1024 * 1024;
export const HEADER_SIZE = 24;

export const MessageType = { call: 0, reply: 1, message: 2, stream: 3, callWithFds: 4, replyWithFds: 5 } as const;
export const MessageStatus = { ok: 0, error: 1, continue: 2 } as const;

export const Proc = {
  connectOpen: 1,
  connectClose: 2,
  connectGetVersion: 4,
  domainGetXmlDesc: 14,
  domainLookupByName: 23,
  domainLookupByUuid: 24,
  connectGetHostname: 59,
  authList: 66,
  authPolkit: 70,
  domainIsActive: 150,
  domainIsPersistent: 151,
  connectGetLibVersion: 157,
  domainUpdateDeviceFlags: 174,
  nwfilterLookupByName: 175,
  nwfilterLookupByUuid: 176,
  nwfilterGetXmlDesc: 177,
  nwfilterUndefine: 181,
  domainGetState: 212,
  connectListAllDomains: 273,
  connectListAllNwfilters: 286,
  connectDomainEventCallbackRegisterAny: 316,
  connectDomainEventCallbackDeregisterAny: 317,
  domainEventCallbackLifecycle: 318,
  /** remote_domain_event_callback_device_removed_msg (VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED). */
  domainEventCallbackDeviceRemoved: 333,
  /** remote_domain_event_callback_device_added_msg (VIR_DOMAIN_EVENT_ID_DEVICE_ADDED). */
  domainEventCallbackDeviceAdded: 354,
  nwfilterBindingCreateXml: 399,
  nwfilterBindingDelete: 400,
  connectListAllNwfilterBindings: 401,
  nwfilterDefineXmlFlags: 431,
} as const;

export const ErrorCode = {
  internalError: 1,
  noSupport: 3,
  operationFailed: 9,
  xmlError: 27,
  xmlDetail: 35,
  systemError: 38,
  rpc: 39,
  noDomain: 42,
  operationInvalid: 55,
  invalidNwfilter: 61,
  noNwfilter: 62,
  buildFirewall: 63,
  xmlInvalidSchema: 92,
  noNwfilterBinding: 101,
} as const;

/** virErrorDomain values seen in the helpers' cases. */
export const ErrorDomain = { xml: 5, qemu: 10, nwfilter: 33 } as const;

export const NWFILTER_DEFINE_VALIDATE = 1;
export const DOMAIN_XML_INACTIVE = 2;
export const DOMAIN_AFFECT_LIVE = 1;
export const DOMAIN_AFFECT_CONFIG = 2;
/** virDomainEventID values (include/libvirt/libvirt-domain.h). */
export const DOMAIN_EVENT_ID_LIFECYCLE = 0;
export const DOMAIN_EVENT_ID_DEVICE_REMOVED = 15;
export const DOMAIN_EVENT_ID_DEVICE_ADDED = 19;

export const DomainState = ['nostate', 'running', 'blocked', 'paused', 'shutdown', 'shutoff', 'crashed', 'pmsuspended'] as const;
export const DomainEventType = ['defined', 'undefined', 'started', 'suspended', 'resumed', 'stopped', 'shutdown', 'pmsuspended', 'crashed'] as const;
/** virDomainEventStartedDetailType MIGRATED / virDomainEventStoppedDetailType MIGRATED. */
export const STARTED_MIGRATED = 1;
export const STOPPED_MIGRATED = 3;
