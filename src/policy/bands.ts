/**
 * The one place that maps precedence to libvirt priorities.
 *
 * libvirt flattens the rules of a filter and of everything it references (<filterref>) into one
 * list sorted by priority (lower first, -1000..1000); nesting gives no precedence. So "VM beats
 * department beats global" is encoded as disjoint priority bands. Within a service band a deny sits
 * before the allow of the same level, so that a level that allows and denies overlapping ports
 * fails closed. docs/priorities.md renders this table; test/unit/policy/bands.test.ts checks it.
 *
 *   band                                  priorities       filter
 *   VM base rules (RELATED, IPv6 ND)      -1000            VM
 *   department enforced custom rules      -900 .. -801     department
 *   department enforced services deny     -790             department
 *   department enforced services allow    -780             department
 *   VM custom rules                       -700 .. -601     VM
 *   VM service overrides deny             -590             VM
 *   VM service overrides allow            -580             VM
 *   department custom rules               -500 .. -401     department
 *   department service overrides deny     -390             department
 *   department service overrides allow    -380             department
 *   global service defaults (allow)        100             global
 *   department default action              900             department
 *   VM fail-closed default (drop)          1000            VM
 */
export const PRIORITY_MIN = -1000;
export const PRIORITY_MAX = 1000;

export const BANDS = {
  vmBase: -1000,
  departmentEnforcedRules: -900,
  departmentEnforcedServiceDeny: -790,
  departmentEnforcedServiceAllow: -780,
  vmRules: -700,
  vmServiceDeny: -590,
  vmServiceAllow: -580,
  departmentRules: -500,
  departmentServiceDeny: -390,
  departmentServiceAllow: -380,
  globalServiceAllow: 100,
  departmentDefault: 900,
  vmDefault: 1000,
} as const;

/**
 * A level's custom rules take `base + rank`, where rank orders them by (spec priority, position in
 * the list): 0..99 for at most 100 rules. Every custom rule gets a priority of its own, so libvirt's
 * order between rules of equal priority (not guaranteed) can never decide between two actions.
 */
export const CUSTOM_RULE_SPAN = 100;

export interface BandRow {
  band: string;
  from: number;
  to: number;
  filter: 'VM' | 'department' | 'global';
}

/** The table above as data, in evaluation order; used by docs and tests. */
export const BAND_TABLE: readonly BandRow[] = [
  { band: 'VM base rules (related ICMP errors, IPv6 neighbour discovery)', from: BANDS.vmBase, to: BANDS.vmBase, filter: 'VM' },
  { band: 'department enforced custom rules', from: BANDS.departmentEnforcedRules, to: BANDS.departmentEnforcedRules + CUSTOM_RULE_SPAN - 1, filter: 'department' },
  { band: 'department enforced service deny', from: BANDS.departmentEnforcedServiceDeny, to: BANDS.departmentEnforcedServiceDeny, filter: 'department' },
  { band: 'department enforced service allow', from: BANDS.departmentEnforcedServiceAllow, to: BANDS.departmentEnforcedServiceAllow, filter: 'department' },
  { band: 'VM custom rules', from: BANDS.vmRules, to: BANDS.vmRules + CUSTOM_RULE_SPAN - 1, filter: 'VM' },
  { band: 'VM service override deny', from: BANDS.vmServiceDeny, to: BANDS.vmServiceDeny, filter: 'VM' },
  { band: 'VM service override allow', from: BANDS.vmServiceAllow, to: BANDS.vmServiceAllow, filter: 'VM' },
  { band: 'department custom rules', from: BANDS.departmentRules, to: BANDS.departmentRules + CUSTOM_RULE_SPAN - 1, filter: 'department' },
  { band: 'department service override deny', from: BANDS.departmentServiceDeny, to: BANDS.departmentServiceDeny, filter: 'department' },
  { band: 'department service override allow', from: BANDS.departmentServiceAllow, to: BANDS.departmentServiceAllow, filter: 'department' },
  { band: 'global service default allow', from: BANDS.globalServiceAllow, to: BANDS.globalServiceAllow, filter: 'global' },
  { band: 'department default action', from: BANDS.departmentDefault, to: BANDS.departmentDefault, filter: 'department' },
  { band: 'VM fail-closed default drop', from: BANDS.vmDefault, to: BANDS.vmDefault, filter: 'VM' },
];
