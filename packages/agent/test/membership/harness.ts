/**
 * A hand-driven Swim: a manual clock (advance(ms) runs due timers in order), a recorded outbox,
 * pending push-pull exchanges resolved by the test, and fake peers whose packets the test
 * writes.
 */
import {
  decodePacket,
  encodePacket,
  type Body,
  type Packet,
  type Sender,
} from '../../src/membership/codec.ts'
import type { Clock, TimerId } from '../../src/runtime/clock.ts'
import type { MemberInfo, MemberUpdate } from '../../src/membership/member.ts'
import { SeededRandom } from '../../src/runtime/random.ts'
import { Swim, type SwimInit } from '../../src/membership/swim.ts'
import { SIM_EPOCH_BASE, Scheduler } from '../../src/sim/scheduler.ts'

export const CLUSTER = 7

export class ManualClock implements Clock {
  readonly scheduler = new Scheduler()

  now(): number {
    return this.scheduler.now()
  }

  wallNow(): number {
    return SIM_EPOCH_BASE + this.scheduler.now()
  }

  defer(fn: () => void): void {
    this.scheduler.after(0, fn)
  }

  setTimer(ms: number, fn: () => void): TimerId {
    return this.scheduler.after(ms, fn)
  }

  clearTimer(id: TimerId): void {
    if (typeof id === 'number') this.scheduler.cancel(id)
  }

  /** Runs every timer due within `ms`, in order, then sets the clock forward. */
  advance(ms: number): void {
    const target = this.scheduler.now() + ms
    for (;;) {
      const next = this.scheduler.nextTime()
      if (next === null || next > target) break
      this.scheduler.step()
    }
    // Move the clock: schedule and run a no-op at the target time.
    this.scheduler.at(target, () => undefined)
    this.scheduler.step()
  }
}

export interface Sent {
  readonly atMs: number
  readonly to: string
  readonly bytes: Uint8Array
  readonly packet: Packet
}

export interface PendingPushPull {
  readonly atMs: number
  readonly to: string
  readonly state: Packet
  readonly signal: AbortSignal
  resolve(bytes: Uint8Array): void
  reject(err: Error): void
}

export function peer(i: number, epoch = 1000, incarnation = 0): Sender {
  return {
    actorId: (0xa0 + i).toString(16).padStart(32, '0'),
    addr: `10.0.0.${i}:7946`,
    epoch,
    incarnation,
  }
}

export const SELF = {
  actorId: 'ff'.repeat(16),
  addr: '10.0.0.255:7946',
  epoch: 5000,
}

export function update(
  s: Sender,
  state: MemberUpdate['state'],
  overrides: Partial<MemberUpdate> = {},
): MemberUpdate {
  return {
    actorId: s.actorId,
    addr: s.addr,
    epoch: s.epoch,
    incarnation: s.incarnation,
    state,
    accuser: state === 'suspect' ? peer(99).actorId : null,
    ...overrides,
  }
}

export class Harness {
  readonly clock = new ManualClock()
  readonly random = new SeededRandom(42)
  readonly outbox: Sent[] = []
  readonly pushPulls: PendingPushPull[] = []
  readonly changes: MemberInfo[] = []
  /** Peers (by address) that answer every ping 1 ms later. */
  readonly autoAck = new Map<string, Sender>()
  readonly swim: Swim

  constructor(init: Partial<SwimInit> = {}) {
    this.swim = new Swim(
      {
        clock: this.clock,
        random: this.random,
        send: (to, bytes) => {
          const decoded = decodePacket(bytes)
          if (!decoded.ok) throw new Error(`Swim sent an undecodable packet: ${decoded.reason}`)
          this.outbox.push({ atMs: this.clock.now(), to, bytes, packet: decoded.packet })
          const body = decoded.packet.body
          const responder = this.autoAck.get(to)
          if (body.type === 'ping' && responder !== undefined) {
            this.clock.setTimer(1, () => {
              this.deliver(responder, { type: 'ack', seq: body.seq })
            })
          }
        },
        pushPull: (to, state, signal) =>
          new Promise<Uint8Array>((resolve, reject) => {
            const decoded = decodePacket(state)
            if (!decoded.ok) throw new Error('Swim sent an undecodable state')
            this.pushPulls.push({
              atMs: this.clock.now(),
              to,
              state: decoded.packet,
              signal,
              resolve,
              reject,
            })
          }),
      },
      {
        ...SELF,
        clusterId: CLUSTER,
        onChange: (m) => {
          this.changes.push(m)
        },
        ...init,
      },
    )
  }

  /** Delivers a packet from a fake peer. */
  deliver(from: Sender, body: Body, updates: readonly MemberUpdate[] = []): void {
    const bytes = encodePacket({ clusterId: CLUSTER, sender: from, body, updates })
    this.swim.receive(from.addr, bytes)
  }

  /** Makes the Swim know these peers (alive), as if they had gossiped to it. */
  know(...peers: Sender[]): void {
    for (const p of peers) this.deliver(p, { type: 'gossip' })
  }

  /** Makes these peers known and answering pings. */
  knowResponsive(...peers: Sender[]): void {
    for (const p of peers) this.autoAck.set(p.addr, p)
    this.know(...peers)
  }

  /** Sent packets since the last take. */
  take(): Sent[] {
    return this.outbox.splice(0)
  }

  /** Answers a pending push-pull with `members` from `from`. */
  answerPushPull(p: PendingPushPull, from: Sender, members: readonly MemberUpdate[]): void {
    p.resolve(
      encodePacket({
        clusterId: CLUSTER,
        sender: from,
        body: { type: 'push-pull-reply', members },
        updates: [],
      }),
    )
  }

  state(actor: Sender): string | undefined {
    return this.swim.member(actor.actorId)?.state
  }
}

/** Lets pending promise callbacks run. */
export function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}
