/**
 * Replication as the agent runs it: the Replicator on real time, with broadcast and sync over
 * TCP streams on the gossip port (stream kinds STREAM_BROADCAST and STREAM_SYNC, next to
 * membership's push-pull). The only replication module that does I/O.
 *
 * - Broadcast stream: after the kind frame, every frame is one change message; nothing is
 *   answered.
 * - Sync stream: after the kind frame, the client sends a request frame and reads one answer
 *   frame, as many times as it wants.
 */
import type { Logger } from 'pino'
import { siteIdHex, type Replica } from '../crdt/replica.ts'
import { systemClock } from '../runtime/clock.ts'
import { systemRandom } from '../runtime/random.ts'
import type { Membership } from '../membership/agent-membership.ts'
import type { FramedConnection } from '../transport/stream.ts'
import { STREAM_BROADCAST, STREAM_SYNC } from '../transport/stream-kind.ts'
import type { SyncSession } from '../sync/sync-client.ts'
import { PeerLinks, type PeerLinksStats } from './peer-links.ts'
import type { ReplicationOptions } from './options.ts'
import { Replicator } from './replicator.ts'

export { STREAM_BROADCAST, STREAM_SYNC }

/** Frames waiting per broadcast link while it connects. */
const LINK_PENDING_MAX = 1024
/** A peer that could not be reached is not dialled again for this long. */
const LINK_RETRY_MS = 1000

export interface AgentReplication {
  readonly replicator: Replicator
  linkStats(): PeerLinksStats
  stop(): void
}

function syncSession(membership: Membership, addr: string): SyncSession {
  let conn: FramedConnection | null = null
  let frames: AsyncIterator<Uint8Array> | null = null
  return {
    async request(bytes, signal) {
      if (conn === null) {
        conn = await membership.streams.connect(addr, signal)
        frames = conn.frames()[Symbol.asyncIterator]()
        await conn.send(new Uint8Array([STREAM_SYNC]), signal)
      }
      const c = conn
      const it = frames as AsyncIterator<Uint8Array>
      await c.send(bytes, signal)
      const aborted = new Promise<never>((_, reject) => {
        const fail = (): void => {
          c.close()
          reject(signal.reason instanceof Error ? signal.reason : new Error('sync aborted'))
        }
        if (signal.aborted) fail()
        else signal.addEventListener('abort', fail, { once: true })
      })
      const next = await Promise.race([it.next(), aborted])
      if (next.done === true) throw new Error(`${addr} closed the sync stream`)
      return next.value
    },
    close() {
      conn?.close()
    },
  }
}

export function startReplication(
  replica: Replica,
  membership: Membership,
  config: { readonly clusterId: number; readonly options: ReplicationOptions },
  logger: Logger,
): AgentReplication {
  const log = logger.child({ subsystem: 'replication' })
  const self = siteIdHex(replica.siteId)
  const links = new PeerLinks(membership.streams, {
    kind: STREAM_BROADCAST,
    pendingMax: LINK_PENDING_MAX,
    retryMs: LINK_RETRY_MS,
  })
  const replicator = new Replicator(
    {
      replica,
      clock: systemClock(),
      random: systemRandom(),
      clusterId: config.clusterId,
      peers: () =>
        membership
          .members()
          .filter((m) => m.state === 'alive' && m.actorId !== self)
          .map((m) => ({ actorId: m.actorId, addr: m.addr })),
      sendBroadcast: (addr, bytes) => {
        links.send(addr, bytes)
      },
      openSession: (addr) => syncSession(membership, addr),
      onEvent: (event) => {
        switch (event.type) {
          case 'held':
            log.warn(
              { origin: event.origin, version: event.version, reason: event.reason },
              'change held until the schema has what it names',
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
        }
      },
    },
    config.options,
  )
  membership.registerStream(STREAM_BROADCAST, (conn) => {
    void (async () => {
      try {
        for await (const frame of conn.frames()) replicator.onBroadcast(frame)
      } catch (err) {
        log.debug({ err, peer: conn.remoteAddr }, 'broadcast stream ended')
      } finally {
        conn.close()
      }
    })()
  })
  membership.registerStream(STREAM_SYNC, (conn) => {
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
        log.debug({ err, peer: conn.remoteAddr }, 'sync stream ended')
      } finally {
        for (const session of sessions) replicator.endSyncSession(session)
        conn.close()
      }
    })()
  })
  replicator.start()
  return {
    replicator,
    linkStats: () => links.stats(),
    stop: () => {
      replicator.stop()
      links.close()
    },
  }
}
