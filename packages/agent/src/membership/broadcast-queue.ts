/**
 * The queue of member updates waiting to be piggybacked (memberlist's TransmitLimitedQueue).
 *
 * One item per member (a newer fact about a member replaces the older one, and its transmit
 * count starts again at 0), so the queue never holds more items than there are members. Each
 * packet takes the items sent the fewest times first ("most needed first"); an item is dropped
 * once it has been sent `limit` times, where the caller computes the limit from the current
 * cluster size (retransmitMult * ceil(log10(n + 1))).
 */

interface Item {
  readonly key: string
  readonly bytes: Uint8Array
  transmits: number
}

/** Where a fill writes: a packet under construction. */
export interface UpdateSink {
  /** Appends the encoded update if it fits; says whether it did. */
  tryAdd(encoded: Uint8Array): boolean
  /** Bytes still free. */
  remaining(): number
}

/** Smallest encoded update (actor id, epoch, incarnation, state, a 1-byte address). */
const MIN_UPDATE_BYTES = 16 + 8 + 4 + 1 + 2
/** A fill stops after this many items in a row did not fit: the packet is as good as full. */
const MISFITS_MAX = 8

export class BroadcastQueue {
  private readonly items = new Map<string, Item>()
  /** buckets[t]: items sent t times, oldest first. */
  private buckets: Set<Item>[] = []

  /** Items waiting. */
  get size(): number {
    return this.items.size
  }

  /** Queues `bytes` as the current fact about `key`, replacing any older one. */
  enqueue(key: string, bytes: Uint8Array): void {
    this.remove(key)
    const item: Item = { key, bytes, transmits: 0 }
    this.items.set(key, item)
    this.bucket(0).add(item)
  }

  remove(key: string): void {
    const item = this.items.get(key)
    if (item === undefined) return
    this.items.delete(key)
    this.buckets[item.transmits]?.delete(item)
  }

  has(key: string): boolean {
    return this.items.has(key)
  }

  /** Transmit count of the item about `key`, or null. */
  transmits(key: string): number | null {
    return this.items.get(key)?.transmits ?? null
  }

  /**
   * Fills `sink` with the least-sent items (skipping `skipKey`), counts one transmission for
   * each item added and drops the items that reached `limit`. Returns how many were added.
   */
  fill(sink: UpdateSink, limit: number, skipKey: string | null = null): number {
    const sent: Item[] = []
    let misfits = 0
    for (let t = 0; t < this.buckets.length; t++) {
      const bucket = this.buckets[t]
      if (bucket === undefined || bucket.size === 0) continue
      if (t >= limit) {
        // The cluster shrank below what these items were queued for: they are done.
        for (const item of bucket) this.items.delete(item.key)
        bucket.clear()
        continue
      }
      for (const item of bucket) {
        if (item.key === skipKey) continue
        if (sink.tryAdd(item.bytes)) {
          sent.push(item)
          misfits = 0
        } else if (++misfits >= MISFITS_MAX || sink.remaining() < MIN_UPDATE_BYTES) break
      }
      if (misfits >= MISFITS_MAX || sink.remaining() < MIN_UPDATE_BYTES) break
    }
    // Move the sent items only now, so that a fill never sends one item twice.
    for (const item of sent) {
      this.buckets[item.transmits]?.delete(item)
      item.transmits++
      if (item.transmits >= limit) this.items.delete(item.key)
      else this.bucket(item.transmits).add(item)
    }
    return sent.length
  }

  private bucket(t: number): Set<Item> {
    while (this.buckets.length <= t) this.buckets.push(new Set())
    return this.buckets[t] as Set<Item>
  }
}
