/**
 * Membership as the agent runs it: a `Swim` on a real UDP socket (`[gossip] addr`) and a TCP
 * listener on the same host:port for push-pull exchanges. The only membership module that does
 * I/O.
 *
 * Stream protocol: the first frame of a connection is one byte of stream kind followed by the
 * payload. For `STREAM_PUSH_PULL` the listener answers with one frame (the bytes of
 * `swim.handlePushPull`, without a kind byte) and closes; anything else is closed unanswered.
 *
 * Stopping: `leave()` (gossips "left", bounded by `leaveTimeoutMs`), `stop()`, then the
 * transports close.
 */
import type { Logger } from 'pino'
import { parseAddr } from '../transport/address.ts'
import { STREAM_PUSH_PULL, withKind } from '../transport/stream-kind.ts'
import { UdpTransport, type DatagramStats } from '../transport/datagram.ts'
import {
  TcpStreamTransport,
  type FramedConnection,
  type StreamListener,
  type StreamStats,
} from '../transport/stream.ts'
import { systemClock } from '../runtime/clock.ts'
import { systemRandom } from '../runtime/random.ts'
import { LAN_PROFILE, WAN_PROFILE, type SwimOptions } from './defaults.ts'
import type { MemberInfo, MemberState } from './member.ts'
import { Swim, type SwimStats } from './swim.ts'

export { STREAM_PUSH_PULL }

/** Takes over an accepted connection whose first frame named a registered stream kind. */
export type StreamHandler = (connection: FramedConnection, firstFrame: Uint8Array) => void

/** Attempts at binding UDP and TCP on the same free port when the configured port is 0. */
const PORT_ZERO_ATTEMPTS = 8

export interface MembershipConfig {
  /** `host:port` to bind; port 0 picks a free port (the same for UDP and TCP). */
  readonly addr: string
  readonly bootstrap: readonly string[]
  readonly clusterId: number
  readonly profile: 'lan' | 'wan'
  /** Every membership parameter (the profile's with overrides); the profile's when absent. */
  readonly options?: SwimOptions
  /** 32 lowercase hex digits. */
  readonly actorId: string
  /** Larger than any earlier life's: the start time in ms. */
  readonly epoch: number
  /** How long `stop()` lets the graceful leave run before stopping anyway. */
  readonly leaveTimeoutMs: number
}

export interface Membership {
  /** The bound gossip address, as other members reach it. */
  readonly addr: string
  readonly swim: Swim
  /** The stream transport, for other subsystems' outbound connections to the same port. */
  readonly streams: TcpStreamTransport
  /**
   * Hands accepted connections whose first frame starts with `kind` to `handler` (replication
   * registers its broadcast and sync streams here: one port serves everything).
   */
  registerStream(kind: number, handler: StreamHandler): void
  members(): MemberInfo[]
  memberCounts(): Readonly<Record<MemberState, number>>
  stats(): SwimStats
  udpStats(): DatagramStats
  streamStats(): StreamStats
  /** Leaves (bounded), stops the Swim, closes the sockets. Idempotent. */
  stop(): Promise<void>
}

/** Hosts that mean "every interface": fine to bind, but not an address peers can reach. */
function isUnspecified(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || /^[0:]+$/.test(host)
}

async function bindBoth(
  addr: string,
  streams: TcpStreamTransport,
  onConnection: Parameters<TcpStreamTransport['listen']>[1],
): Promise<{ udp: UdpTransport; listener: StreamListener }> {
  const { port } = parseAddr(addr, { portZero: true })
  const attempts = port === 0 ? PORT_ZERO_ATTEMPTS : 1
  let lastError: unknown
  for (let i = 0; i < attempts; i++) {
    const udp = await UdpTransport.bind(addr)
    try {
      // TCP on exactly the port UDP got, so one address serves both.
      const listener = await streams.listen(udp.localAddr, onConnection)
      return { udp, listener }
    } catch (err) {
      lastError = err
      await udp.close()
    }
  }
  throw lastError
}

export async function startMembership(
  config: MembershipConfig,
  logger: Logger,
): Promise<Membership> {
  const log = logger.child({ subsystem: 'membership' })
  const { host } = parseAddr(config.addr, { portZero: true })
  if (isUnspecified(host)) {
    throw new Error(
      `[gossip] addr ${config.addr}: ${host} is not an address peers can reach; ` +
        'give the address of one interface (e.g. "10.0.0.1:8787")',
    )
  }
  const profile = config.options ?? (config.profile === 'wan' ? WAN_PROFILE : LAN_PROFILE)
  const streams = new TcpStreamTransport()
  let swim: Swim | null = null
  const handlers = new Map<number, StreamHandler>()

  const { udp, listener } = await bindBoth(config.addr, streams, (conn) => {
    const timer = setTimeout(() => {
      conn.close()
    }, profile.pushPullTimeoutMs)
    timer.unref()
    void (async () => {
      let handedOver = false
      try {
        for await (const frame of conn.frames()) {
          const handler = handlers.get(frame[0] ?? -1)
          if (handler !== undefined) {
            clearTimeout(timer)
            handedOver = true
            handler(conn, frame)
          } else if (frame[0] === STREAM_PUSH_PULL && swim !== null) {
            const answer = swim.handlePushPull(conn.remoteAddr, frame.subarray(1))
            if (answer !== null) await conn.send(answer)
          }
          break
        }
      } catch (err) {
        log.debug({ err, peer: conn.remoteAddr }, 'push-pull connection failed')
      } finally {
        clearTimeout(timer)
        if (!handedOver) conn.close()
      }
    })()
  })

  const addr = udp.localAddr
  swim = new Swim(
    {
      clock: systemClock(),
      random: systemRandom(),
      send: (to, bytes) => {
        udp.send(to, bytes)
      },
      pushPull: async (to, state, signal) => {
        const conn = await streams.connect(to, signal)
        try {
          await conn.send(withKind(STREAM_PUSH_PULL, state), signal)
          for await (const frame of conn.frames()) return frame
          throw new Error(`${to} closed the push-pull without an answer`)
        } finally {
          conn.close()
        }
      },
    },
    {
      actorId: config.actorId,
      addr,
      epoch: config.epoch,
      clusterId: config.clusterId,
      bootstrap: config.bootstrap,
      profile,
      onChange: (m) => {
        log.info(
          { actor_id: m.actorId, addr: m.addr, state: m.state, incarnation: m.incarnation },
          `member ${m.actorId.slice(0, 8)} ${m.state}`,
        )
      },
    },
  )
  const s = swim
  udp.onMessage((from, bytes) => {
    s.receive(from, bytes)
  })
  s.start()

  let stopping: Promise<void> | undefined
  const stop = async (): Promise<void> => {
    await Promise.race([
      s.leave(),
      new Promise<void>((resolve) => setTimeout(resolve, config.leaveTimeoutMs).unref()),
    ])
    s.stop()
    await Promise.all([listener.close(), udp.close()])
  }
  return {
    addr,
    swim: s,
    streams,
    registerStream: (kind, handler) => {
      handlers.set(kind, handler)
    },
    members: () => s.members(),
    memberCounts: () => s.memberCounts(),
    stats: () => s.stats(),
    udpStats: () => udp.stats(),
    streamStats: () => streams.stats(),
    stop: () => (stopping ??= stop()),
  }
}
