/**
 * Changed primary keys waiting to be matched, per table, collected from commit events.
 *
 * Adding is all the commit path does (O(changed rows), no SQL, no decoding); the subscription
 * manager drains the queue on its next tick. A key changed twice before a tick is queued once.
 * The queue has a cap on keys across all tables: a table whose keys would go beyond it is
 * marked overflowed instead and its keys dropped, and every subscription reading it then
 * re-runs its query in full, which is exact whatever was dropped.
 */

export interface DrainedChanges {
  /** Packed keys per table (lower-case name), each once. */
  readonly keys: ReadonlyMap<string, ReadonlyMap<string, Uint8Array>>
  /** Tables whose keys overflowed the cap: their subscriptions need a full re-evaluation. */
  readonly overflowed: ReadonlySet<string>
}

export class ChangeQueue {
  private keys = new Map<string, Map<string, Uint8Array>>()
  private overflowed = new Set<string>()
  private count = 0
  /** Tables that overflowed since the queue was created. */
  overflows = 0
  private readonly max: number

  constructor(max: number) {
    this.max = max
  }

  get size(): number {
    return this.count
  }

  get empty(): boolean {
    return this.count === 0 && this.overflowed.size === 0
  }

  add(table: string, pk: Uint8Array): void {
    if (this.overflowed.has(table)) return
    let keys = this.keys.get(table)
    if (keys === undefined) {
      keys = new Map()
      this.keys.set(table, keys)
    }
    const id = Buffer.from(pk.buffer, pk.byteOffset, pk.byteLength).toString('latin1')
    if (keys.has(id)) return
    if (this.count >= this.max) {
      this.count -= keys.size
      this.keys.delete(table)
      this.overflowed.add(table)
      this.overflows++
      return
    }
    keys.set(id, pk)
    this.count++
  }

  drain(): DrainedChanges {
    const drained = { keys: this.keys, overflowed: this.overflowed }
    this.keys = new Map()
    this.overflowed = new Set()
    this.count = 0
    return drained
  }
}
