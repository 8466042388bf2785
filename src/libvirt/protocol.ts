// Constants of libvirt's remote protocol (src/remote/remote_protocol.x, src/rpc/virnetprotocol.x).

export const REMOTE_PROGRAM = 0x20008086;
export const REMOTE_PROTOCOL_VERSION = 1;
/** Largest packet libvirt sends or accepts (VIR_NET_MESSAGE_MAX). */
export const MAX_PACKET = 32 * 1024 * 1024;
export const HEADER_SIZE = 24;

export const MessageType = { call: 0, reply: 1, message: 2, stream: 3, callWithFds: 4, replyWithFds: 5 } as const;
export const MessageStatus = { ok: 0, error: 1, continue: 2 } as const;

/**
 * The procedures the client calls or receives, with the libvirt release that introduced each
 * (src/libvirt_public.syms for the APIs, docs/news-*.html.in for the callback events). The table
 * in docs/libvirt-client.md derives MIN_LIBVIRT_VERSION from these.
 */
export const Proc = {
  connectOpen: 1, // 0.3.0 (remote driver)
  connectClose: 2, // 0.3.0
  connectGetVersion: 4, // 0.3.0
  domainGetXmlDesc: 14, // 0.3.0
  domainLookupByName: 23, // 0.3.0
  domainLookupByUuid: 24, // 0.3.0
  connectGetHostname: 59, // 0.3.0
  authList: 66, // 0.4.0
  authPolkit: 70, // 0.4.0
  domainIsActive: 150, // 0.7.3
  domainIsPersistent: 151, // 0.7.3
  connectGetLibVersion: 157, // 0.7.3
  domainUpdateDeviceFlags: 174, // 0.8.0
  nwfilterLookupByName: 175, // 0.8.0
  nwfilterLookupByUuid: 176, // 0.8.0
  nwfilterGetXmlDesc: 177, // 0.8.0
  /** virNWFilterDefineXML: no flags, so no VALIDATE; the fallback where nwfilterDefineXmlFlags is unknown. */
  nwfilterDefineXml: 180, // 0.8.0
  nwfilterUndefine: 181, // 0.8.0
  domainGetState: 212, // 0.9.2
  connectListAllDomains: 273, // 0.9.13
  connectListAllNwfilters: 286, // 0.10.2
  connectDomainEventCallbackRegisterAny: 316, // 1.2.2 (callback-id events; not used before 1.2.2)
  connectDomainEventCallbackDeregisterAny: 317, // 1.2.2
  domainEventCallbackLifecycle: 318, // 1.2.2
  /** remote_domain_event_callback_device_removed_msg (VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, the event itself since 1.1.1). */
  domainEventCallbackDeviceRemoved: 333, // 1.2.2
  /** remote_domain_event_callback_device_added_msg (VIR_DOMAIN_EVENT_ID_DEVICE_ADDED). */
  domainEventCallbackDeviceAdded: 354, // 1.2.15 (optional: refused registration is tolerated)
  nwfilterBindingCreateXml: 399, // 4.5.0 (not used by the agent)
  nwfilterBindingDelete: 400, // 4.5.0
  connectListAllNwfilterBindings: 401, // 4.5.0
  nwfilterDefineXmlFlags: 431, // 7.7.0 (optional: falls back to nwfilterDefineXml)
} as const;

/**
 * The oldest libvirtd the client connects to: the handshake registers the lifecycle callback with
 * CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY (1.2.2), the newest procedure it cannot do without.
 * Newer ones are optional (DEVICE_ADDED 1.2.15, bindings 4.5.0, define with VALIDATE 7.7.0).
 */
export const MIN_LIBVIRT_VERSION = { major: 1, minor: 2, micro: 2 } as const;

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
export const ErrorDomain = { xml: 5, rpc: 7, qemu: 10, nwfilter: 33 } as const;

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
