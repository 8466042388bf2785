// The JSON-lines protocol between the lab (test process) and one agent per namespace (agent.ts).
// One request per line on the agent's stdin, one response per line on its stdout, matched by id;
// requests run concurrently. The agent's first line is AgentHello. Types only.
import type { ExecResult, ListenSpec, ProbeOutcome, SocketProbe, TransferOutcome, TransferSpec } from './probes.js';

export type AgentRequest =
  | { id: number; op: 'listen'; spec: ListenSpec }
  | { id: number; op: 'probe'; probe: SocketProbe }
  | { id: number; op: 'transfer'; spec: TransferSpec }
  /** A bounded command in the namespace (ping, udhcpc, ip ...). */
  | { id: number; op: 'exec'; argv: string[]; timeoutMs: number }
  /**
   * A long-lived child in the namespace (dnsmasq), ended when the agent ends: so it dies with the
   * test process too. Answers once a line of its output matches `ready`.
   */
  | { id: number; op: 'daemon'; argv: string[]; ready: string; readyTimeoutMs: number }
  /** Ends a daemon (SIGTERM, then SIGKILL after 2 s); answers with its output. */
  | { id: number; op: 'stop'; daemon: number };

export interface AgentResults {
  listen: { tcp: string[]; udp: string[] };
  probe: ProbeOutcome;
  transfer: TransferOutcome;
  exec: ExecResult;
  daemon: { daemon: number; pid: number };
  stop: { output: string };
}

export type AgentOp = AgentRequest['op'];

export type AgentResponse = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

export interface AgentHello {
  hello: 'nwflab-agent';
  pid: number;
}
