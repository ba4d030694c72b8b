/**
 * One node of a cluster, assembled once: membership (Swim), replication (the Replicator, its
 * broadcast links and sync sessions) and the stream-kind registrar on one gossip address. The
 * agent (main.ts: UDP, TCP, the system clock), the simulator (sim/replication-cluster.ts: the
 * seeded faulty network's datagrams and streams, a virtual clock) and the benchmarks all build
 * their nodes here, so the code that runs under simulated faults is the code that runs in
 * production.
 *
 * Streams on the gossip port, told apart by their first byte (transport/stream-kind.ts):
 * - STREAM_PUSH_PULL: one request frame, one answer frame, closed (Swim's full state exchange);
 * - STREAM_BROADCAST: after the kind frame, every frame is one change message, never answered;
 * - STREAM_SYNC: after the kind frame, request and answer frames alternate (sync-session.ts).
 *
 * Lifecycle: `start()` listens on the datagram transport's address, then starts Swim and the
 * Replicator. `stop()` stops replication (nothing more is sent to peers), leaves (gossips
 * "left", bounded by `leaveTimeoutMs`), stops Swim, then closes the listener and the datagram
 * transport. Both are idempotent.
 */
import { actorIdHex } from '../runtime/actor-id.ts'
import type { Logger } from 'pino'
import type { Replica } from '../crdt/replica.ts'

import type { SwimOptions } from '../membership/defaults.ts'
import type { MemberInfo, MemberState } from '../membership/member.ts'
import { Swim, type SwimStats } from '../membership/swim.ts'
import { PeerLinks, type PeerLinksStats } from '../replication/peer-links.ts'
import type { ReplicationOptions } from '../replication/options.ts'
import { Replicator, type ReplicationEvent } from '../replication/replicator.ts'
import type { Clock } from '../runtime/clock.ts'
import type { Random } from '../runtime/random.ts'
import type { DatagramStats, DatagramTransport } from '../transport/datagram.ts'
import type {
  FramedConnection,
  StreamListener,
  StreamStats,
  StreamTransport,
} from '../transport/stream.ts'
import {
  STREAM_BROADCAST,
  STREAM_PUSH_PULL,
  STREAM_SYNC,
  withKind,
} from '../transport/stream-kind.ts'
import {
  LINK_IDLE_MS,
  LINK_PENDING_BYTES_MAX,
  LINK_PENDING_MAX,
  STREAM_FIRST_FRAME_TIMEOUT_MS,
} from './defaults.ts'
import { Registrar, type RegistrarStats } from './registrar.ts'
import { openSyncSession } from './sync-session.ts'

export interface NodeComponents {
  readonly clock: Clock
  readonly random: Random
  readonly replica: Replica
  /** Bound: its `localAddr` is the node's gossip address (streams listen on it too). */
  readonly datagrams: DatagramTransport
  /** Dials peers, and listens on the gossip address at `start()`. */
  readonly streams: StreamTransport
  readonly logger: Logger
}

export interface NodeInit {
  /** Larger than any earlier life's at this address (the agent uses its start time in ms). */
  readonly epoch: number
  readonly clusterId: number
  readonly bootstrap: readonly string[]
  /** Every membership parameter (a profile with overrides). */
  readonly swim: SwimOptions
  readonly replication: ReplicationOptions
  /** How long `stop()` lets the graceful leave run before stopping anyway. */
  readonly leaveTimeoutMs: number
}

export interface PatinaNode {
  /** The gossip address, as other members reach it. */
  readonly addr: string
  readonly actorId: string
  readonly swim: Swim
  readonly replicator: Replicator
  readonly registrar: Registrar
  members(): MemberInfo[]
  memberCounts(): Readonly<Record<MemberState, number>>
  stats(): SwimStats
  udpStats(): DatagramStats
  streamStats(): StreamStats
  linkStats(): PeerLinksStats
  registrarStats(): RegistrarStats
  start(): Promise<void>
  /** Leaves the cluster (bounded) and stops everything. */
  stop(): Promise<void>
  /**
   * Stops everything at once without a goodbye: the simulator's crash (the host's network
   * life has already ended). Timers stop, nothing more is sent.
   */
  halt(): void
}

function logReplicationEvent(log: Logger, event: ReplicationEvent): void {
  switch (event.type) {
    case 'parked':
      log.warn(
        { origin: event.origin, version: event.version, reason: event.reason },
        'change parked until the schema has what it names',
      )
      break
    case 'refused':
      log.warn({ origin: event.origin, reason: event.reason }, 'malformed change refused')
      break
    case 'apply-failed':
      log.error({ err: event.error }, 'applying received changes failed')
      break
    case 'sync-failed':
      log.debug({ err: event.error, peer: event.peer.addr }, 'sync session failed')
      break
    case 'malformed':
      log.debug({ error: event.error }, 'malformed replication message')
      break
    case 'undeliverable':
      log.warn(
        {
          origin: event.origin,
          version: event.version,
          bytes: event.bytes,
          frame_bytes_max: event.frameBytesMax,
        },
        'version not sent to peers: one of its changes is larger than a frame carries ' +
          '(held; measured again with backoff up to 1 h)',
      )
      break
  }
}

export function createNode(components: NodeComponents, init: NodeInit): PatinaNode {
  const { clock, random, replica, datagrams, streams } = components
  const membershipLog = components.logger.child({ subsystem: 'membership' })
  const replicationLog = components.logger.child({ subsystem: 'replication' })
  const addr = datagrams.localAddr
  const actorId = actorIdHex(replica.actorId)
  const registrar = new Registrar(clock, STREAM_FIRST_FRAME_TIMEOUT_MS)

  const swim = new Swim(
    {
      clock,
      random,
      send: (to, bytes) => {
        datagrams.send(to, bytes)
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
      ...init.swim,
      actorId,
      addr,
      epoch: init.epoch,
      clusterId: init.clusterId,
      bootstrap: init.bootstrap,
      onChange: (m) => {
        membershipLog.info(
          { actor_id: m.actorId, addr: m.addr, state: m.state, incarnation: m.incarnation },
          `member ${m.actorId.slice(0, 8)} ${m.state}`,
        )
      },
    },
  )
  datagrams.onMessage((from, bytes) => {
    swim.receive(from, bytes)
  })

  const links = new PeerLinks(
    { transport: streams, clock, random },
    {
      kind: STREAM_BROADCAST,
      pendingMax: LINK_PENDING_MAX,
      pendingBytesMax: LINK_PENDING_BYTES_MAX,
      idleMs: LINK_IDLE_MS,
    },
  )
  const replicator = new Replicator(
    {
      replica,
      clock,
      random,
      clusterId: init.clusterId,
      peers: () =>
        swim
          .members()
          .filter((m) => m.state === 'alive' && m.actorId !== actorId)
          .map((m) => ({ actorId: m.actorId, addr: m.addr })),
      sendBroadcast: (to, bytes) => {
        links.send(to, bytes)
      },
      openSession: (to) => openSyncSession(streams, to),
      onEvent: (event) => {
        logReplicationEvent(replicationLog, event)
      },
    },
    init.replication,
  )

  registrar.handle(STREAM_PUSH_PULL, (conn, first) => {
    void (async () => {
      try {
        const answer = swim.handlePushPull(conn.remoteAddr, first.subarray(1))
        if (answer !== null) await conn.send(answer)
      } catch (err) {
        membershipLog.debug({ err, peer: conn.remoteAddr }, 'push-pull connection failed')
      } finally {
        conn.close()
      }
    })()
  })
  registrar.handle(STREAM_BROADCAST, (conn) => {
    void (async () => {
      try {
        for await (const frame of conn.frames()) replicator.onBroadcast(frame)
      } catch (err) {
        replicationLog.debug({ err, peer: conn.remoteAddr }, 'broadcast stream ended')
      } finally {
        conn.close()
      }
    })()
  })
  registrar.handle(STREAM_SYNC, (conn: FramedConnection) => {
    void (async () => {
      // A client runs one session per stream and closes the stream when done: the sessions
      // opened here end with it (otherwise they would hold a serving slot until they expire).
      const sessions: number[] = []
      const opened = (session: number): void => {
        sessions.push(session)
      }
      try {
        for await (const frame of conn.frames()) {
          await conn.send(replicator.onSyncRequest(frame, opened))
        }
      } catch (err) {
        replicationLog.debug({ err, peer: conn.remoteAddr }, 'sync stream ended')
      } finally {
        for (const session of sessions) replicator.endSyncSession(session)
        conn.close()
      }
    })()
  })

  let listener: StreamListener | null = null
  let starting: Promise<void> | undefined
  let stopping: Promise<void> | undefined
  const start = async (): Promise<void> => {
    listener = await streams.listen(addr, (conn) => {
      registrar.accept(conn)
    })
    if (stopping !== undefined) return
    swim.start()
    replicator.start()
  }
  const stop = async (): Promise<void> => {
    await starting?.catch(() => undefined)
    // Replication first: nothing is sent to peers once we leave.
    replicator.stop()
    links.close()
    let leaveTimer: ReturnType<Clock['setTimer']> | undefined
    await Promise.race([
      swim.leave(),
      new Promise<void>((resolve) => {
        leaveTimer = clock.setTimer(init.leaveTimeoutMs, resolve)
      }),
    ])
    if (leaveTimer !== undefined) clock.clearTimer(leaveTimer)
    swim.stop()
    await Promise.all([listener?.close(), datagrams.close()])
  }
  return {
    addr,
    actorId,
    swim,
    replicator,
    registrar,
    members: () => swim.members(),
    memberCounts: () => swim.memberCounts(),
    stats: () => swim.stats(),
    udpStats: () => datagrams.stats(),
    streamStats: () => streams.stats(),
    linkStats: () => links.stats(),
    registrarStats: () => registrar.stats(),
    start: () => (starting ??= start()),
    stop: () => (stopping ??= stop()),
    halt: () => {
      stopping ??= Promise.resolve()
      replicator.stop()
      links.close()
      swim.stop()
      void listener?.close()
      void datagrams.close()
    },
  }
}
