import { z } from 'zod';
import { IpCidr } from './addresses.js';
import { Conditions, ObjectMeta, PeerSelector } from './common.js';

export const MAX_GROUP_ADDRESSES = 1024;

export const AddressGroupSpec = z
  .object({
    description: z.string().max(1000).optional().describe('What these addresses are, e.g. "office networks".'),
    addresses: z
      .array(IpCidr)
      .max(MAX_GROUP_ADDRESSES)
      .default([])
      .describe('IPv4 and IPv6 addresses or CIDRs (a bare address is /32 or /128).'),
    peers: PeerSelector.optional().describe(
      'VMs whose addresses (parameters.ip and ipv6) belong to the group as well, resolved by the controller into status.peerAddresses.',
    ),
  })
  .strict()
  .describe('A named set of addresses that rules reference by name (sourceGroup, destinationGroup).');
export type AddressGroupSpec = z.infer<typeof AddressGroupSpec>;

export const AddressGroupStatus = z
  .object({
    observedGeneration: z.number().int().min(0).optional(),
    conditions: Conditions.optional(),
    peerAddresses: z.array(z.string()).optional().describe('Addresses of the VMs spec.peers selects, as the controller resolved them.'),
    peerCount: z.number().int().min(0).optional().describe('VMs spec.peers selects (some may have no addresses).'),
    ipv4: z.number().int().min(0).optional().describe('IPv4 entries of the group (addresses and peers).'),
    ipv6: z.number().int().min(0).optional().describe('IPv6 entries of the group (addresses and peers).'),
  })
  .describe('Observed state, written by the controller.');
export type AddressGroupStatus = z.infer<typeof AddressGroupStatus>;

export const AddressGroup = z.looseObject({
  apiVersion: z.string(),
  kind: z.literal('AddressGroup'),
  metadata: ObjectMeta,
  spec: AddressGroupSpec,
  status: AddressGroupStatus.optional(),
});
export type AddressGroup = z.infer<typeof AddressGroup>;

/** Labels of the AddressGroups the controller makes for rules' inline peer selectors. */
export const PEER_GROUP_LABEL = 'nwfilter.infinibay.io/peer-group';
