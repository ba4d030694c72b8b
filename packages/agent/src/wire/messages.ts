/**
 * The replication messages, as values. `wire.ts` turns them into bytes and back.
 *
 * Broadcast (fire and forget, stream kind STREAM_BROADCAST): one `ChangeMessage` per frame.
 * Sync (request/response, stream kind STREAM_SYNC): the client sends `SyncStart`, the server
 * answers `SyncState` (its heads and gaps) or `SyncReject`; then the client sends `SyncNeeds`
 * and the server answers `SyncChunks`, as many rounds as the client wants within its bounds.
 */
import type { Change } from '../crdt/changes.ts'
import type { VersionRange } from '../crdt/version-ranges.ts'

/**
 * Part or all of one origin's version, or a range of versions that hold nothing any more.
 * `seqs` says which seqs of the version this chunk covers: every cell the sender still holds
 * with a seq in that range is in `changes`. A chunk with `seqs = [0, lastSeq]` is the whole
 * version. Every change of a chunk has `actorId = origin` and `dbVersion = version`.
 */
export type Chunk =
  | {
      readonly kind: 'full'
      readonly origin: Uint8Array
      readonly version: number
      readonly seqs: VersionRange
      readonly lastSeq: number
      /** Origin's wall-clock commit time in ms since the Unix epoch; 0 when unknown. */
      readonly ts: number
      readonly changes: readonly Change[]
    }
  | {
      readonly kind: 'empty'
      readonly origin: Uint8Array
      readonly versions: VersionRange
      readonly ts: number
    }

/** What every message starts with: who sends it, in which cluster. */
export interface Envelope {
  readonly clusterId: number
  /** The sender's actor id (16 bytes). */
  readonly sender: Uint8Array
}

/** What a node holds of one origin: versions 1..head except gaps. */
export interface OriginHave {
  readonly origin: Uint8Array
  readonly head: number
  readonly gaps: readonly VersionRange[]
}

/**
 * Versions `start..end` of `origin`, served newest first. `fromSeq` (when > 0) says version
 * `end` is wanted only from that seq on (the rest of a version cut short by a byte budget).
 */
export interface Need {
  readonly origin: Uint8Array
  readonly start: number
  readonly end: number
  readonly fromSeq: number
}

export type SyncRejectReason = 'busy' | 'cluster' | 'session' | 'malformed'

export type Message =
  | (Envelope & { readonly type: 'change'; readonly chunk: Chunk })
  | (Envelope & { readonly type: 'sync-start' })
  | (Envelope & {
      readonly type: 'sync-state'
      readonly session: number
      readonly haves: readonly OriginHave[]
    })
  | (Envelope & { readonly type: 'sync-reject'; readonly reason: SyncRejectReason })
  | (Envelope & {
      readonly type: 'sync-needs'
      readonly session: number
      /** Largest reply the client accepts, in encoded bytes (a single chunk may exceed it). */
      readonly maxBytes: number
      readonly needs: readonly Need[]
    })
  | (Envelope & {
      readonly type: 'sync-chunks'
      readonly chunks: readonly Chunk[]
      /** What the server did not get to within the budget, to ask for in the next round. */
      readonly rest: readonly Need[]
    })

export type MessageType = Message['type']
