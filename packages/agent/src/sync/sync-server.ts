/**
 * The serving side of anti-entropy. A client opens a session (`sync-start`) and gets this
 * node's heads and gaps for every origin; then it asks for versions (`sync-needs`) and gets
 * them newest first, cut into chunks, up to the byte budget it named and what the node's
 * byte-rate bucket allows; what did not fit comes back as `rest`. Any origin's versions are
 * served, not only this node's. Versions whose cells were all overwritten since are sent as
 * empty ranges. Sessions are capped; a session ends when the client asks for nothing (its
 * goodbye), when the stream it was opened on closes (`end()`), or once idle for
 * `sessionIdleMs`.
 *
 * No reply is larger than a frame (`frameBytesMax`): chunks that would make it so wait for the
 * next request. A version with a chunk no frame can carry (one change too big) is not sent: it
 * is held as undeliverable (undeliverable.ts), skipped without being read while held, and
 * measured again only with backoff. A client asking for it again and again costs no bandwidth.
 */
import { CHUNK_OVERHEAD_BYTES } from '../config/defaults.ts'
import type { Replica } from '../crdt/replica.ts'
import type { Clock } from '../runtime/clock.ts'
import { actorIdHex } from '../runtime/actor-id.ts'
import { chunkBytes, chunkFrameRoom, chunkVersion } from '../wire/chunks.ts'
import type { Chunk, Message, Need, SyncRejectReason } from '../wire/messages.ts'
import { chunkEncodedBytes, NEED_BYTES_MAX, SYNC_CHUNKS_OVERHEAD_BYTES_MAX } from '../wire/wire.ts'
import type { TokenBucket } from '../runtime/token-bucket.ts'
import type { Undeliverable } from './undeliverable.ts'

export interface SyncServerOptions {
  readonly sessionsMax: number
  readonly sessionIdleMs: number
  readonly chunkBytes: number
  /** Largest frame a peer reads: no reply is bigger. */
  readonly frameBytesMax: number
}

export interface SyncServerDeps {
  readonly replica: Replica
  readonly clock: Clock
  readonly bucket: TokenBucket
  readonly clusterId: number
  /** Versions that cannot be framed, shared with the replicator's broadcasts. */
  readonly undeliverable: Undeliverable
  /** A version was found undeliverable for the first time (`bytes`: its largest chunk). */
  onUndeliverable?(origin: string, version: number, bytes: number): void
}

export interface SyncServerStats {
  /** Gauge. */
  readonly sessions: number
  readonly sessionsStarted: number
  readonly rejected: Readonly<Record<SyncRejectReason, number>>
  readonly chunksServed: number
  readonly bytesServed: number
}

export class SyncServer {
  private readonly deps: SyncServerDeps
  private readonly options: SyncServerOptions
  private readonly sessions = new Map<number, number>()
  private nextSession = 1
  private counters = {
    sessionsStarted: 0,
    chunksServed: 0,
    bytesServed: 0,
    rejected: { busy: 0, cluster: 0, session: 0, malformed: 0 } as Record<SyncRejectReason, number>,
  }

  constructor(deps: SyncServerDeps, options: SyncServerOptions) {
    this.deps = deps
    this.options = options
  }

  stats(): SyncServerStats {
    this.expire()
    return {
      sessions: this.sessions.size,
      sessionsStarted: this.counters.sessionsStarted,
      rejected: { ...this.counters.rejected },
      chunksServed: this.counters.chunksServed,
      bytesServed: this.counters.bytesServed,
    }
  }

  /**
   * The client is gone (the agent calls this when the stream a session was opened on closes):
   * the session stops counting against the cap at once instead of after `sessionIdleMs`.
   */
  end(session: number): void {
    this.sessions.delete(session)
  }

  private expire(): void {
    const now = this.deps.clock.now()
    for (const [id, last] of this.sessions) {
      if (now - last > this.options.sessionIdleMs) this.sessions.delete(id)
    }
  }

  private reject(reason: SyncRejectReason): Message {
    this.counters.rejected[reason]++
    return {
      type: 'sync-reject',
      clusterId: this.deps.clusterId,
      sender: this.deps.replica.actorId,
      reason,
    }
  }

  /**
   * An answer of `bytes` encoded bytes is going out: it counts against the byte-rate cap and in
   * the stats (the budget of `serve` is in queue-accounting units, this is the wire).
   */
  charge(bytes: number): void {
    this.deps.bucket.take(bytes)
    this.counters.bytesServed += bytes
  }

  /** Answers one sync request. */
  handle(request: Message): Message {
    if (request.clusterId !== this.deps.clusterId) return this.reject('cluster')
    const { replica } = this.deps
    if (request.type === 'sync-start') {
      this.expire()
      if (this.sessions.size >= this.options.sessionsMax) return this.reject('busy')
      const session = this.nextSession++
      this.sessions.set(session, this.deps.clock.now())
      this.counters.sessionsStarted++
      return {
        type: 'sync-state',
        clusterId: this.deps.clusterId,
        sender: replica.actorId,
        session,
        haves: replica
          .originStates()
          .map((o) => ({ origin: o.actorId, head: o.head, gaps: o.gaps })),
      }
    }
    if (request.type !== 'sync-needs') return this.reject('malformed')
    if (!this.sessions.has(request.session)) return this.reject('session')
    if (request.needs.length === 0) {
      // Asking for nothing ends the session (the client says goodbye).
      this.end(request.session)
      return {
        type: 'sync-chunks',
        clusterId: this.deps.clusterId,
        sender: replica.actorId,
        chunks: [],
        rest: [],
      }
    }
    this.sessions.set(request.session, this.deps.clock.now())
    const { chunks, rest } = this.serve(request.needs, request.maxBytes)
    this.counters.chunksServed += chunks.length
    return {
      type: 'sync-chunks',
      clusterId: this.deps.clusterId,
      sender: replica.actorId,
      chunks,
      rest,
    }
  }

  /**
   * Newest first, whole chunks, until the budget is spent or the reply would outgrow a frame
   * (`frame`: exact encoded bytes, next to `bytes`, the budget's accounting units).
   */
  private serve(
    needs: readonly Need[],
    maxBytes: number,
  ): { chunks: Chunk[]; rest: Need[]; bytes: number } {
    const { replica, bucket, undeliverable } = this.deps
    // In debt: serve nothing now; the client asks again later.
    const budget = bucket.available() <= 0 ? 0 : Math.min(maxBytes, bucket.available())
    const chunks: Chunk[] = []
    const rest: Need[] = []
    let bytes = 0
    // What the chunks may take of a frame: `rest` has at most one need per need asked.
    const frameRoom =
      this.options.frameBytesMax - SYNC_CHUNKS_OVERHEAD_BYTES_MAX - needs.length * NEED_BYTES_MAX
    const chunkRoom = chunkFrameRoom(this.options.frameBytesMax)
    const cutBytes = Math.min(this.options.chunkBytes, chunkRoom)
    let frame = 0
    let full = budget <= 0
    for (const need of needs) {
      if (full) {
        rest.push(need)
        continue
      }
      const origin = actorIdHex(need.origin)
      let pendingEmpty: [number, number] | null = null
      const flushEmpty = (): void => {
        if (pendingEmpty === null) return
        chunks.push({ kind: 'empty', origin: need.origin, versions: pendingEmpty, ts: 0 })
        bytes += CHUNK_OVERHEAD_BYTES // what chunkBytes() counts for an empty chunk
        frame += CHUNK_OVERHEAD_BYTES // more than one encodes to
        pendingEmpty = null
      }
      for (let v = need.end; v >= need.start; v--) {
        if (undeliverable.skips(origin, v)) continue
        const cs = replica.changesFor(need.origin, v)
        if (cs === null) continue // not held here after all (its state changed since)
        if (cs.changes.length === 0) {
          undeliverable.release(origin, v) // its big cell was overwritten since
          if (pendingEmpty !== null && pendingEmpty[0] === v + 1) pendingEmpty[0] = v
          else {
            flushEmpty()
            pendingEmpty = [v, v]
          }
          continue
        }
        const fromSeq = v === need.end ? need.fromSeq : 0
        const parts = chunkVersion(cs, 0, cutBytes, fromSeq)
        const exact = parts.map(chunkEncodedBytes)
        let largest = 0
        for (const n of exact) largest = Math.max(largest, n)
        if (largest > chunkRoom) {
          if (undeliverable.hold(origin, v, largest))
            this.deps.onUndeliverable?.(origin, v, largest)
          continue
        }
        undeliverable.release(origin, v)
        flushEmpty()
        let i = 0
        for (; i < parts.length; i++) {
          const part = parts[i] as Chunk
          const size = chunkBytes(part)
          const encoded = exact[i] as number
          // The first chunk goes even over the budget (it could never go otherwise), never
          // over a frame.
          if (frame + encoded > frameRoom) break
          if (chunks.length > 0 && bytes + size > budget) break
          chunks.push(part)
          bytes += size
          frame += encoded
        }
        if (i < parts.length) {
          const next = parts[i] as Chunk
          const seq = next.kind === 'full' ? next.seqs[0] : 0
          rest.push({ origin: need.origin, start: need.start, end: v, fromSeq: seq })
          full = true
          break
        }
        if (bytes >= budget && v > need.start) {
          rest.push({ origin: need.origin, start: need.start, end: v - 1, fromSeq: 0 })
          full = true
          break
        }
      }
      flushEmpty()
      if (bytes >= budget) full = true
    }
    return { chunks, rest, bytes }
  }
}
