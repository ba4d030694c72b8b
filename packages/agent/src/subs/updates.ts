/**
 * `POST /v1/updates/:table`: a stream of `{"notify":["update"|"delete",[pk...]]}` for every row
 * of one table that a commit changed, local or merged from a peer. No query, no snapshot.
 *
 * Commits arrive in order; the hub keeps, per table, the latest state of each changed key
 * until the next tick (a key changed twice in one tick is sent once, with its latest state),
 * then encodes one line per key, once for all the table's listeners, and each listener writes
 * them (or queues them while its connection is full), in tick order. So a listener never
 * sees an older state of a key after a newer one. Each listener's queue holds at most
 * `maxQueued` lines: a listener that lets more pile up is cut off with an error event.
 */
import { encodeCells } from '@patina/protocol'
import { unpackPk } from '../crdt/pk-codec.ts'
import { SubsError } from './errors.ts'
import { notifyLine } from './events.ts'
import type { EncodedLines, UpdatesWriter } from './streams.ts'

export type UpdateListener = UpdatesWriter

export class UpdatesHub {
  private readonly listeners = new Map<string, Set<UpdateListener>>()
  private readonly pending = new Map<string, Map<string, { pk: Uint8Array; deleted: boolean }>>()
  private readonly maxQueued: number
  /** Called for each listener cut off for being too slow. */
  private readonly onCut: (l: UpdateListener) => void
  notifications = 0
  /** Keys that could not be decoded (never expected: the replica packs them). */
  undecodable = 0

  /** Bytes per chunk handed to a connection. */
  private readonly chunkBytes: number

  constructor(maxQueued: number, chunkBytes: number, onCut: (l: UpdateListener) => void) {
    this.maxQueued = maxQueued
    this.chunkBytes = chunkBytes
    this.onCut = onCut
  }

  /** True when someone listens to `table` (lower case): only then are its changes kept. */
  listening(table: string): boolean {
    return this.listeners.has(table)
  }

  get size(): number {
    let n = 0
    for (const set of this.listeners.values()) n += set.size
    return n
  }

  queued(): number {
    let n = 0
    for (const set of this.listeners.values()) for (const l of set) n += l.queuedLines
    return n
  }

  all(): UpdateListener[] {
    return [...this.listeners.values()].flatMap((set) => [...set])
  }

  add(listener: UpdateListener): void {
    let set = this.listeners.get(listener.table)
    if (set === undefined) {
      set = new Set()
      this.listeners.set(listener.table, set)
    }
    set.add(listener)
  }

  remove(listener: UpdateListener): void {
    const set = this.listeners.get(listener.table)
    if (set === undefined) return
    set.delete(listener)
    if (set.size === 0) {
      this.listeners.delete(listener.table)
      this.pending.delete(listener.table)
    }
  }

  /** A committed row change (called on the commit path: constant work). */
  record(table: string, pk: Uint8Array, deleted: boolean): void {
    let keys = this.pending.get(table)
    if (keys === undefined) {
      keys = new Map()
      this.pending.set(table, keys)
    }
    const id = Buffer.from(pk.buffer, pk.byteOffset, pk.byteLength).toString('latin1')
    // Re-inserting moves the key to the end: its latest state goes out in its latest place.
    keys.delete(id)
    keys.set(id, { pk, deleted })
    if (keys.size > this.maxQueued) {
      // More than any listener may queue: every listener of the table would be cut anyway.
      this.pending.delete(table)
      for (const l of this.listeners.get(table) ?? []) {
        this.cut(
          l,
          new SubsError(
            'TOO_SLOW',
            `more than ${this.maxQueued} rows changed at once ([subscriptions] max_listener_lag); start over`,
          ),
        )
      }
    }
  }

  get empty(): boolean {
    return this.pending.size === 0
  }

  /** Moves the pending changes into the listeners' queues (the manager's tick). */
  flush(): void {
    for (const [table, keys] of this.pending) {
      const set = this.listeners.get(table)
      if (set === undefined || keys.size === 0) continue
      const lines: string[] = []
      for (const { pk, deleted } of keys.values()) {
        try {
          lines.push(notifyLine(deleted, encodeCells(unpackPk(pk))))
        } catch {
          // A key that does not decode is counted and skipped; the others still go out.
          this.undecodable++
        }
      }
      this.notifications += lines.length
      if (lines.length === 0) continue
      const chunks = encodeLines(lines, this.chunkBytes)
      for (const l of set) {
        if (l.cut !== null) continue
        if (l.queuedLines + lines.length > this.maxQueued) {
          this.cut(
            l,
            new SubsError(
              'TOO_SLOW',
              `update stream fell behind by more than ${this.maxQueued} notifications ([subscriptions] max_listener_lag); start over`,
            ),
          )
          continue
        }
        for (const chunk of chunks) l.push(chunk)
      }
    }
    this.pending.clear()
  }

  private cut(l: UpdateListener, reason: SubsError): void {
    if (l.cut !== null) return
    l.cut = reason
    l.check()
    this.onCut(l)
  }
}

/** `lines` as chunks of about `chunkBytes`, each encoded once for every listener. */
function encodeLines(lines: readonly string[], chunkBytes: number): EncodedLines[] {
  const out: EncodedLines[] = []
  let text = ''
  let n = 0
  for (const line of lines) {
    text += line
    n++
    if (text.length >= chunkBytes) {
      out.push({ lines: n, bytes: Buffer.from(text) })
      text = ''
      n = 0
    }
  }
  if (n > 0) out.push({ lines: n, bytes: Buffer.from(text) })
  return out
}
