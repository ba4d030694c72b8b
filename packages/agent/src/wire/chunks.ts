/**
 * Between the replica's changesets and the wire's chunks: cutting a version into chunks of
 * bounded size, and turning a received chunk back into a changeset for `Replica.apply`.
 */
import { actorIdHex } from '../runtime/actor-id.ts'
import {
  CHANGE_OVERHEAD_BYTES,
  CHUNK_OVERHEAD_BYTES,
  SYNC_NEEDS_PER_REQUEST_MAX,
} from '../config/defaults.ts'
import type { Change, Changeset, FullChangeset } from '../crdt/changes.ts'

import type { SqlValue } from '../crdt/values.ts'
import type { Chunk } from './messages.ts'
import { ChunkSizer, NEED_BYTES_MAX, SYNC_CHUNKS_OVERHEAD_BYTES_MAX } from './wire.ts'

/** An upper bound of the encoded size of a value. */
function valueBytes(value: SqlValue): number {
  if (value === null) return 1
  if (typeof value === 'bigint' || typeof value === 'number') return 11
  if (typeof value === 'string') return 5 + value.length * 3
  return 5 + value.length
}

/** What one change is counted for in queue and budget accounting. */
export function changeBytes(c: Change): number {
  return CHANGE_OVERHEAD_BYTES + c.pk.length + valueBytes(c.val)
}

/** What a chunk is counted for in queue and budget accounting. */
export function chunkBytes(chunk: Chunk): number {
  if (chunk.kind === 'empty') return CHUNK_OVERHEAD_BYTES
  let n = CHUNK_OVERHEAD_BYTES
  for (const c of chunk.changes) n += changeBytes(c)
  return n
}

/**
 * Largest encoded chunk that a frame of `frameBytesMax` bytes always carries: alone in a
 * `sync-chunks` reply next to a full request's worth of `rest` (a `change` message needs less).
 * A chunk over it (one change too big, as a change is sent whole) can reach no peer.
 */
export function chunkFrameRoom(frameBytesMax: number): number {
  return (
    frameBytesMax - SYNC_CHUNKS_OVERHEAD_BYTES_MAX - SYNC_NEEDS_PER_REQUEST_MAX * NEED_BYTES_MAX
  )
}

/**
 * Cuts version `cs` into chunks of at most `maxBytes` encoded each (one change may exceed it),
 * starting at seq `fromSeq`. Each chunk's `seqs` covers the seqs from the end of the previous
 * chunk to its own last change; the last one ends at the version's last seq. A version with no
 * cells left (all overwritten since) is one empty chunk.
 */
export function chunkVersion(
  cs: FullChangeset,
  ts: number,
  maxBytes: number,
  fromSeq = 0,
): Chunk[] {
  const changes = fromSeq > 0 ? cs.changes.filter((c) => c.seq >= fromSeq) : cs.changes
  if (cs.changes.length === 0) {
    return [{ kind: 'empty', origin: cs.actorId, versions: [cs.version, cs.version], ts }]
  }
  const out: Chunk[] = []
  let start = fromSeq
  let current: Change[] = []
  const sizer = new ChunkSizer(start)
  const close = (end: number): void => {
    out.push({
      kind: 'full',
      origin: cs.actorId,
      version: cs.version,
      seqs: [start, end],
      lastSeq: cs.lastSeq,
      ts,
      changes: current,
    })
    start = end + 1
    current = []
    sizer.reset(start)
  }
  for (const c of changes) {
    if (current.length > 0 && sizer.bytes + sizer.measure(c) > maxBytes) {
      close((current.at(-1) as Change).seq)
    }
    current.push(c)
    sizer.add(c)
  }
  close(Math.max(cs.lastSeq, start))
  return out
}

/** The changeset a received chunk stands for. */
export function chunkToChangeset(chunk: Chunk): Changeset {
  if (chunk.kind === 'empty') {
    return { kind: 'empty', actorId: chunk.origin, versions: chunk.versions }
  }
  return {
    kind: 'full',
    actorId: chunk.origin,
    version: chunk.version,
    changes: chunk.changes,
    lastSeq: chunk.lastSeq,
    seqs: chunk.seqs,
  }
}

/** Identity of a chunk for deduplication: origin, version(s), seq range. */
export function chunkKey(chunk: Chunk): string {
  const origin = actorIdHex(chunk.origin)
  if (chunk.kind === 'empty') return `${origin}:${chunk.versions[0]}-${chunk.versions[1]}:e`
  return `${origin}:${chunk.version}:${chunk.seqs[0]}-${chunk.seqs[1]}`
}

/** Number of changes a chunk carries (an empty chunk counts as one, for batching). */
export function chunkCost(chunk: Chunk): number {
  return chunk.kind === 'empty' ? 1 : Math.max(1, chunk.changes.length)
}
