/**
 * Prometheus metrics of membership: read at scrape time from `Swim.stats()` and the UDP
 * transport's stats (collect() callbacks; nothing is counted twice).
 */
import { Counter, Gauge, type Registry } from 'prom-client'
import { MEMBER_STATES } from '../membership/member.ts'
import type { SwimStats } from '../membership/swim.ts'
import { DATAGRAM_DROP_REASONS, type DatagramStats } from '../transport/datagram.ts'

export interface MembershipStatsSource {
  stats(): SwimStats
  udpStats(): DatagramStats
}

/** camelCase -> snake_case, for label values. */
function snake(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)
}

/** A counter whose value(s) are read from a stats object at scrape time. */
function readCounter<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
  read: () => readonly (readonly [Partial<Record<L, string>>, number])[],
): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset()
      for (const [labels, value] of read()) this.inc(labels, value)
    },
  })
}

export function registerMembershipMetrics(registry: Registry, source: MembershipStatsSource): void {
  new Gauge({
    name: 'patina_members',
    help: 'Known members by state, self included',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      const counts = source.stats().members
      for (const state of MEMBER_STATES) this.set({ state }, counts[state])
    },
  })
  new Gauge({
    name: 'patina_swim_local_health',
    help: "Lifeguard's local health multiplier (0 = healthy; probes slow down as it grows)",
    registers: [registry],
    collect() {
      this.set(source.stats().localHealth)
    },
  })
  new Gauge({
    name: 'patina_swim_incarnation',
    help: "This member's incarnation number (grows with each refuted suspicion)",
    registers: [registry],
    collect() {
      this.set(source.stats().incarnation)
    },
  })
  new Gauge({
    name: 'patina_swim_broadcast_queue',
    help: 'Member updates waiting to be piggybacked',
    registers: [registry],
    collect() {
      this.set(source.stats().broadcastQueue)
    },
  })
  readCounter(
    registry,
    'patina_swim_probes_total',
    'Probes of other members: sent (direct pings), failed (no ack, even indirectly)',
    ['result'],
    () => {
      const s = source.stats()
      return [
        [{ result: 'sent' }, s.probesSent],
        [{ result: 'failed' }, s.probesFailed],
      ]
    },
  )
  readCounter(
    registry,
    'patina_swim_indirect_probes_total',
    'Ping-reqs sent (one per helper asked) after a direct ping got no ack',
    [],
    () => [[{}, source.stats().indirectProbesSent]],
  )
  readCounter(
    registry,
    'patina_swim_nacks_total',
    'Nacks sent (as a helper) and received (as a prober)',
    ['direction'],
    () => {
      const s = source.stats()
      return [
        [{ direction: 'sent' }, s.nacksSent],
        [{ direction: 'received' }, s.nacksReceived],
      ]
    },
  )
  readCounter(
    registry,
    'patina_swim_suspicions_total',
    'Suspicions raised by our own failed probes, and suspect members seen refuting',
    ['event'],
    () => {
      const s = source.stats()
      return [
        [{ event: 'raised' }, s.suspicionsRaised],
        [{ event: 'refuted' }, s.suspicionsRefuted],
      ]
    },
  )
  readCounter(
    registry,
    'patina_swim_false_suspicion_refutations_total',
    'Suspicions of this member that it refuted (each one a false positive somewhere)',
    [],
    () => [[{}, source.stats().falseSuspicionRefutations]],
  )
  readCounter(
    registry,
    'patina_swim_members_declared_down_total',
    'Members our own suspicion timer declared down',
    [],
    () => [[{}, source.stats().membersDeclaredDown]],
  )
  readCounter(
    registry,
    'patina_swim_push_pulls_total',
    'Full-state exchanges: started by us (ok or failed) and served for others',
    ['result'],
    () => {
      const s = source.stats()
      return [
        [{ result: 'ok' }, s.pushPulls - s.pushPullsFailed],
        [{ result: 'failed' }, s.pushPullsFailed],
        [{ result: 'served' }, s.pushPullsServed],
      ]
    },
  )
  readCounter(
    registry,
    'patina_swim_packets_total',
    'Membership datagrams sent and received (decoded or not)',
    ['direction'],
    () => {
      const s = source.stats()
      return [
        [{ direction: 'sent' }, s.packetsSent],
        [{ direction: 'received' }, s.packetsReceived],
      ]
    },
  )
  readCounter(
    registry,
    'patina_swim_packets_dropped_total',
    'Membership packets dropped by the protocol, by reason (malformed, oversized, ...)',
    ['reason'],
    () =>
      Object.entries(source.stats().packetsDropped).map(
        ([reason, n]) => [{ reason: snake(reason) }, n] as const,
      ),
  )
  readCounter(
    registry,
    'patina_gossip_udp_dropped_total',
    'Datagrams the UDP transport dropped, by reason',
    ['reason'],
    () => {
      const dropped = source.udpStats().dropped
      return DATAGRAM_DROP_REASONS.map((reason) => [{ reason }, dropped[reason]] as const)
    },
  )
}
