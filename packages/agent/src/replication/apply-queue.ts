/**
 * Received chunks waiting to be applied. Capped in bytes (and, for broadcasts, in chunks): a
 * broadcast that finds it full is dropped (counted; anti-entropy fetches it later), and sync
 * reserves room for a whole reply before it asks for it, so a node catching up never holds
 * more than the cap in memory.
 *
 * Chunks are applied in batches, one SQLite transaction per batch, on a timer that fires as
 * soon as the event loop is free. The batch size (in changes) adapts: it halves when a batch
 * took longer than `targetMs` and doubles when one took less than a quarter of it while the
 * queue had more, within [batchMin, batchMax].
 */
import { APPLY_BATCH_START, APPLY_GROW_BELOW_TARGET_DIVISOR } from '../config/defaults.ts'
import type { Clock } from '../runtime/clock.ts'
import { chunkBytes, chunkCost, chunkKey } from '../wire/chunks.ts'
import type { Chunk } from '../wire/messages.ts'

export interface ApplyQueueOptions {
  readonly queueMax: number
  readonly queueBytesMax: number
  readonly batchMin: number
  readonly batchMax: number
  readonly targetMs: number
}

export type ChunkSource = 'broadcast' | 'sync'

export interface QueuedChunk {
  readonly chunk: Chunk
  readonly key: string
  readonly bytes: number
  readonly source: ChunkSource
}

export interface ApplyQueueDeps {
  /**
   * Batches run on `clock.defer` (setImmediate in the agent: a 0 ms timer waits about 1 ms in
   * Node.js, which is most of a loopback propagation); `clock.now()` times them (real time in
   * the agent, virtual time in simulation).
   */
  readonly clock: Clock
  /** Applies a batch; must not throw. */
  apply(batch: readonly QueuedChunk[]): void
}

export interface Reservation {
  /** Room held: what was asked for, at most the queue's byte cap. Ask for no bigger reply. */
  readonly bytes: number
  release(): void
}

export interface ApplyQueueStats {
  readonly queued: number
  readonly queuedBytes: number
  readonly reservedBytes: number
  readonly batchSize: number
  readonly dropped: number
  readonly batches: number
  readonly applyMs: number
}

export class ApplyQueue {
  private readonly deps: ApplyQueueDeps
  private readonly options: ApplyQueueOptions
  private items: QueuedChunk[] = []
  private readonly keys = new Map<string, number>()
  private bytes = 0
  private batchSize: number
  private scheduled = false
  private reserved = 0
  private waiters: { bytes: number; resolve: (r: Reservation) => void }[] = []
  private stopped = false
  private counters = { dropped: 0, batches: 0, applyMs: 0 }

  constructor(deps: ApplyQueueDeps, options: ApplyQueueOptions) {
    this.deps = deps
    this.options = options
    this.batchSize = Math.max(options.batchMin, Math.min(APPLY_BATCH_START, options.batchMax))
  }

  /** True when a chunk with this key is waiting. */
  has(key: string): boolean {
    return this.keys.has(key)
  }

  /**
   * The versions waiting, by origin (hex), in one pass over the queue (so sync does not ask for
   * them again).
   */
  pendingVersions(): Map<string, Set<number>> {
    const out = new Map<string, Set<number>>()
    for (const { chunk } of this.items) {
      if (chunk.kind !== 'full') continue
      const hex = Buffer.from(chunk.origin).toString('hex')
      let set = out.get(hex)
      if (set === undefined) out.set(hex, (set = new Set()))
      set.add(chunk.version)
    }
    return out
  }

  /** Queues a chunk; false when it was dropped because the queue is full. */
  offer(chunk: Chunk, source: ChunkSource): boolean {
    if (this.stopped) return false
    const bytes = chunkBytes(chunk)
    if (
      source === 'broadcast' &&
      (this.items.length >= this.options.queueMax ||
        this.bytes + this.reserved + bytes > this.options.queueBytesMax)
    ) {
      this.counters.dropped++
      return false
    }
    const key = chunkKey(chunk)
    this.items.push({ chunk, key, bytes, source })
    this.keys.set(key, (this.keys.get(key) ?? 0) + 1)
    this.bytes += bytes
    this.schedule()
    return true
  }

  /**
   * Reserves room for `bytes`, at most the cap (sync calls it before each request and asks for
   * a reply no bigger than the reservation's `bytes`, so that what the reply brings fits under
   * the cap); resolves when the room is there. Sync offers then go in without a check;
   * `release()` gives the reservation back once the reply is queued.
   */
  reserve(bytes: number): Promise<Reservation> {
    const want = Math.min(bytes, this.options.queueBytesMax)
    if (this.stopped || this.fits(want)) return Promise.resolve(this.grant(want))
    return new Promise((resolve) => {
      this.waiters.push({ bytes: want, resolve })
    })
  }

  private grant(bytes: number): Reservation {
    this.reserved += bytes
    let released = false
    return {
      bytes,
      release: () => {
        if (released) return
        released = true
        this.reserved -= bytes
        this.wake()
      },
    }
  }

  private fits(bytes: number): boolean {
    return this.bytes + this.reserved + bytes <= this.options.queueBytesMax
  }

  stats(): ApplyQueueStats {
    return {
      queued: this.items.length,
      queuedBytes: this.bytes,
      reservedBytes: this.reserved,
      batchSize: this.batchSize,
      ...this.counters,
    }
  }

  stop(): void {
    this.stopped = true
    this.items = []
    this.keys.clear()
    this.bytes = 0
    for (const w of this.waiters) w.resolve(this.grant(w.bytes))
    this.waiters = []
  }

  private schedule(): void {
    if (this.scheduled || this.items.length === 0 || this.stopped) return
    this.scheduled = true
    const run = (): void => {
      this.scheduled = false
      this.drain()
    }
    this.deps.clock.defer(run)
  }

  /** Applies one batch, then schedules the next (other work runs in between). */
  private drain(): void {
    if (this.stopped || this.items.length === 0) return
    let cost = 0
    let n = 0
    while (n < this.items.length && (n === 0 || cost < this.batchSize)) {
      cost += chunkCost((this.items[n] as QueuedChunk).chunk)
      n++
    }
    const batch = this.items.slice(0, n)
    this.items = this.items.slice(n)
    for (const item of batch) {
      this.bytes -= item.bytes
      const left = (this.keys.get(item.key) ?? 1) - 1
      if (left === 0) this.keys.delete(item.key)
      else this.keys.set(item.key, left)
    }
    const started = this.deps.clock.now()
    this.deps.apply(batch)
    const took = this.deps.clock.now() - started
    this.counters.batches++
    this.counters.applyMs += took
    if (took > this.options.targetMs) {
      this.batchSize = Math.max(this.options.batchMin, this.batchSize >> 1)
    } else if (
      took < this.options.targetMs / APPLY_GROW_BELOW_TARGET_DIVISOR &&
      cost >= this.batchSize
    ) {
      this.batchSize = Math.min(this.options.batchMax, this.batchSize * 2)
    }
    this.wake()
    this.schedule()
  }

  private wake(): void {
    while (this.waiters.length > 0) {
      const w = this.waiters[0] as (typeof this.waiters)[number]
      if (!this.fits(w.bytes)) break
      this.waiters.shift()
      w.resolve(this.grant(w.bytes))
    }
  }
}
