/**
 * Read queries off the main thread. A ReaderPool keeps `processes` reader processes (children
 * forked from the agent), each with a read-only connection to the database the writer has
 * open in WAL mode, so a query that takes seconds stalls neither writes nor health checks nor
 * gossip.
 *
 * Why processes and not worker processes: better-sqlite3 has no interrupt, and
 * `worker.terminate()` cannot stop a thread inside a SQLite step (V8 only terminates when
 * JavaScript runs): the thread keeps spinning and holding its read transaction, the terminate
 * promise never settles, and even `process.exit()` waits for it. A process ends on SIGKILL
 * wherever it is, and the OS releases its WAL read lock.
 *
 * - Each reader runs one query at a time; further queries wait FIFO in the main thread, up to
 *   `maxConcurrent` running or queued, beyond which `query()` throws OVERLOADED at once.
 * - Rows stream in batches of `batchRows`. A reader sends at most READER_BATCHES_IN_FLIGHT_MAX
 *   batches ahead of what the consumer has taken with `next()`, then waits for credit: a slow
 *   HTTP client never makes the agent buffer a whole result.
 * - Statements that write are refused (NOT_READ_ONLY), as are those the StatementGuard refuses
 *   (NOT_ALLOWED). These and SQL errors reject the first `next()`, before any event.
 * - A consumer that stops early (`return()`, `break`) or aborts cancels its query in the
 *   reader, which finalises the statement and ends the read transaction between two batches.
 * - A row larger than `maxRowBytes` as JSON is refused in the reader, before it crosses to the
 *   agent: the rows before it arrive, then the query fails with ROW_TOO_LARGE. A batch ends at
 *   `batchRows` rows or about READER_BATCH_BYTES bytes, so the batches in flight are bounded
 *   in bytes too.
 * - A reader still large once its query is over (above READER_RSS_RECYCLE_BYTES after a
 *   garbage collection: the query built a huge value) is replaced by a fresh one.
 * - A query still running `timeoutMs` after it reached a reader fails with TIMEOUT. A cancel
 *   (timeout, abort, early stop) that the reader does not acknowledge within CANCEL_GRACE_MS
 *   (it is inside a long SQLite step) ends with SIGKILL, and a fresh reader takes the slot.
 *
 * @example
 * const pool = await ReaderPool.open({ path: 'data/state.db' })
 * for await (const event of pool.query('SELECT id, v FROM t WHERE id > ?', [10n])) {
 *   if (event.kind === 'rows') console.log(event.rows)
 * }
 * await pool.close()
 */
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import {
  API_CONCURRENT_QUERIES_MAX,
  API_ROW_BYTES_MAX,
  API_QUERY_TIMEOUT_MS,
  DB_READER_THREADS,
  READER_BATCH_ROWS,
  READER_BATCHES_IN_FLIGHT_MAX,
  READER_CANCEL_GRACE_MS,
} from '../config/defaults.ts'
import type { SqlValue } from '../crdt/values.ts'
import type { FromWorker, QueryErrorCode, QueryParams, ToWorker } from './query-types.ts'
import { READER_BATCH_BYTES, READER_RSS_RECYCLE_BYTES } from './reader-limits.ts'

export type { QueryErrorCode, QueryParams }

/**
 * How long a reader has to acknowledge a cancel before it is killed and replaced. A reader
 * between batches answers within milliseconds; one inside a long SQLite step cannot answer.
 */
export const CANCEL_GRACE_MS = READER_CANCEL_GRACE_MS

export interface ReaderPoolOptions {
  /** The SQLite file (the writer has it open in WAL mode). */
  readonly path: string
  /** Reader processes, each with one read-only connection (`[db] reader_threads`). */
  readonly processes?: number
  /** Queries running or queued; beyond it `query()` throws OVERLOADED at once. */
  readonly maxConcurrent?: number
  /** From the moment a reader takes the query until it has read the last row; 0: no limit. */
  readonly timeoutMs?: number
  /** Rows per batch sent from a reader. */
  readonly batchRows?: number
  /** A batch ends once its rows are about this many bytes. */
  readonly batchBytes?: number
  /** `[api] max_row_bytes`: a larger row (as JSON) fails the query with ROW_TOO_LARGE; 0: none. */
  readonly maxRowBytes?: number
  /** A reader above this resident set once its query is over is replaced. */
  readonly recycleRssBytes?: number
}

export type QueryEvent =
  | { readonly kind: 'columns'; readonly columns: readonly string[] }
  | { readonly kind: 'rows'; readonly rows: readonly (readonly SqlValue[])[] }
  /** `timeS`: seconds the query took in the reader. */
  | { readonly kind: 'end'; readonly timeS: number }

export type QueryStream = AsyncIterable<QueryEvent> & AsyncIterator<QueryEvent>

export interface ReaderPoolStats {
  readonly processes: number
  /** Readers running a query (or cancelling one). */
  readonly busy: number
  /** Queries waiting for a reader. */
  readonly queued: number
  /** Readers killed and replaced since the pool opened (stuck cancels, crashes). */
  readonly replaced: number
  /** Row batches received from readers since the pool opened. */
  readonly batches: number
  /** Rows refused for `maxRowBytes` since the pool opened. */
  readonly rowsTooLarge: number
  /** Readers replaced for their size after a query (also counted in `replaced`). */
  readonly recycled: number
}

export class QueryError extends Error {
  override readonly name = 'QueryError'
  readonly code: QueryErrorCode
  /** SQLite's result code (`SQLITE_BUSY`, `SQLITE_CORRUPT`, ...) when SQLite raised the error. */
  readonly sqliteCode: string | null

  constructor(
    code: QueryErrorCode,
    message: string,
    options?: { readonly cause?: unknown; readonly sqliteCode?: string | null },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    this.sqliteCode = options?.sqliteCode ?? null
  }
}

type Phase = 'queued' | 'running' | 'cancelling' | 'finished'

type Timer = ReturnType<typeof setTimeout>

interface Waiter {
  readonly resolve: (result: IteratorResult<QueryEvent>) => void
  readonly reject: (error: Error) => void
}

interface Slot {
  reader: ChildProcess
  state: 'starting' | 'idle' | 'busy' | 'failed'
  running: Query | null
  graceTimer: Timer | null
  /** Why the reader failed to start or stopped. */
  failure: string | null
  /** Told once when the reader first opens its connection or fails to (ReaderPool.open). */
  onStarted: ((failure: string | null) => void) | null
}

const DONE: IteratorResult<QueryEvent> = { done: true, value: undefined }

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** Every reader process of every pool, killed when the agent exits however it exits. */
const liveReaders = new Set<ChildProcess>()
let killOnExit = false

function track(reader: ChildProcess): void {
  liveReaders.add(reader)
  reader.once('exit', () => {
    liveReaders.delete(reader)
  })
  if (!killOnExit) {
    killOnExit = true
    // A reader stuck inside a SQLite step would outlive the agent and keep its read lock.
    process.once('exit', () => {
      for (const r of liveReaders) r.kill('SIGKILL')
    })
  }
}

/**
 * One query as its consumer sees it: an async iterator over the events the reader sends, with
 * a buffer bounded by the reader's credit.
 */
class Query implements AsyncIterator<QueryEvent> {
  readonly id: number
  readonly sql: string
  readonly params: QueryParams | undefined
  phase: Phase = 'queued'
  slot: Slot | null = null
  timer: Timer | null = null
  stopListening: (() => void) | null = null
  private readonly buffer: QueryEvent[] = []
  private readonly waiters: Waiter[] = []
  private pendingError: { readonly error: Error } | null = null
  /** No more events will arrive (end seen, failed, or the consumer closed). */
  private complete = false
  /** The consumer is done: everything later is dropped. */
  private closed = false
  private readonly onTaken: (q: Query) => void
  private readonly onClose: (q: Query) => void

  constructor(
    id: number,
    sql: string,
    params: QueryParams | undefined,
    onTaken: (q: Query) => void,
    onClose: (q: Query) => void,
  ) {
    this.id = id
    this.sql = sql
    this.params = params
    this.onTaken = onTaken
    this.onClose = onClose
  }

  [Symbol.asyncIterator](): this {
    return this
  }

  next(): Promise<IteratorResult<QueryEvent>> {
    const event = this.buffer.shift()
    if (event !== undefined) {
      this.taken(event)
      return Promise.resolve({ done: false, value: event })
    }
    if (this.pendingError !== null) {
      const { error } = this.pendingError
      this.pendingError = null
      this.closed = true
      return Promise.reject(error)
    }
    if (this.closed || this.complete) return Promise.resolve(DONE)
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject })
    })
  }

  /** Stops the query (cancelling it in the reader) and drops what was not read. */
  return(): Promise<IteratorResult<QueryEvent>> {
    if (!this.closed) {
      this.closed = true
      this.complete = true
      this.buffer.length = 0
      this.pendingError = null
      for (const w of this.waiters.splice(0)) w.resolve(DONE)
      this.onClose(this)
    }
    return Promise.resolve(DONE)
  }

  /** An event from the reader. */
  push(event: QueryEvent): void {
    if (this.closed || this.complete) return
    if (event.kind === 'end') this.complete = true
    const waiter = this.waiters.shift()
    if (waiter === undefined) {
      this.buffer.push(event)
    } else {
      this.taken(event)
      waiter.resolve({ done: false, value: event })
    }
    if (this.complete) for (const w of this.waiters.splice(0)) w.resolve(DONE)
  }

  /**
   * Ends the stream with an error: after the buffered events (an error from the reader comes
   * after the rows it sent) or, when `now`, at once (timeout, abort, close).
   */
  fail(reason: unknown, now: boolean): void {
    if (this.closed || this.complete) return
    const error = reason instanceof Error ? reason : new Error(String(reason))
    this.complete = true
    if (now) this.buffer.length = 0
    const waiter = this.waiters.shift()
    if (waiter === undefined) {
      this.pendingError = { error }
    } else {
      this.closed = true
      waiter.reject(error)
      for (const w of this.waiters.splice(0)) w.resolve(DONE)
    }
  }

  private taken(event: QueryEvent): void {
    if (event.kind === 'rows') this.onTaken(this)
  }
}

export class ReaderPool {
  private readonly path: string
  private readonly processes: number
  private readonly maxConcurrent: number
  private readonly timeoutMs: number
  private readonly batchRows: number
  private readonly batchBytes: number
  private readonly maxRowBytes: number
  private readonly recycleRssBytes: number
  private readonly slots: Slot[] = []
  private readonly queue: Query[] = []
  /** Queries queued or holding a reader. */
  private active = 0
  private nextId = 1
  private closed = false
  private replaced = 0
  private batches = 0
  private rowsTooLarge = 0
  private recycled = 0
  private readonly exiting = new Set<Promise<void>>()

  private constructor(options: ReaderPoolOptions) {
    this.path = options.path
    this.processes = options.processes ?? DB_READER_THREADS
    this.maxConcurrent = options.maxConcurrent ?? API_CONCURRENT_QUERIES_MAX
    this.timeoutMs = options.timeoutMs ?? API_QUERY_TIMEOUT_MS
    this.batchRows = options.batchRows ?? READER_BATCH_ROWS
    this.batchBytes = options.batchBytes ?? READER_BATCH_BYTES
    this.maxRowBytes = options.maxRowBytes ?? API_ROW_BYTES_MAX
    this.recycleRssBytes = options.recycleRssBytes ?? READER_RSS_RECYCLE_BYTES
    if (!(Number.isInteger(this.processes) && this.processes >= 1)) {
      throw new RangeError(`processes must be a positive integer, got ${this.processes}`)
    }
    if (!(Number.isInteger(this.batchRows) && this.batchRows >= 1)) {
      throw new RangeError(`batchRows must be a positive integer, got ${this.batchRows}`)
    }
    if (!(this.maxConcurrent >= 1)) {
      throw new RangeError(`maxConcurrent must be at least 1, got ${this.maxConcurrent}`)
    }
    if (!(this.batchBytes >= 1)) {
      throw new RangeError(`batchBytes must be at least 1, got ${this.batchBytes}`)
    }
    if (!(this.maxRowBytes >= 0)) {
      throw new RangeError(`maxRowBytes must be 0 or more, got ${this.maxRowBytes}`)
    }
    if (!(this.recycleRssBytes >= 1)) {
      throw new RangeError(`recycleRssBytes must be at least 1, got ${this.recycleRssBytes}`)
    }
    if (!(this.timeoutMs >= 0)) {
      throw new RangeError(`timeoutMs must be 0 or more, got ${this.timeoutMs}`)
    }
  }

  /** Starts the readers; resolves once every one has opened its connection. */
  static async open(options: ReaderPoolOptions): Promise<ReaderPool> {
    const pool = new ReaderPool(options)
    const started: Promise<void>[] = []
    for (let i = 0; i < pool.processes; i++) {
      started.push(
        new Promise((resolve, reject) => {
          pool.slots.push(
            pool.newSlot((failure) => {
              if (failure === null) resolve()
              else reject(new Error(`a reader could not open ${pool.path}: ${failure}`))
            }),
          )
        }),
      )
    }
    try {
      await Promise.all(started)
    } catch (err) {
      await pool.close()
      throw err
    }
    return pool
  }

  /**
   * Runs a read-only statement. Events: `columns`, then `rows` batches, then `end`. Errors
   * found before the first event reject the first `next()` with a QueryError. Throws
   * OVERLOADED or CLOSED at once when the query cannot even be queued. An aborted `signal`
   * cancels the query and rejects with `signal.reason`.
   */
  query(sql: string, params?: QueryParams, signal?: AbortSignal): QueryStream {
    if (this.closed) throw new QueryError('CLOSED', 'the reader pool is closed')
    if (this.active >= this.maxConcurrent) {
      throw new QueryError(
        'OVERLOADED',
        `too many queries: ${this.maxConcurrent} are already running or queued`,
      )
    }
    const q = new Query(
      this.nextId++,
      sql,
      params,
      (taken) => {
        this.credit(taken)
      },
      (closed) => {
        this.cancel(closed)
      },
    )
    if (signal?.aborted === true) {
      q.phase = 'finished'
      q.fail(signal.reason, true)
      return q
    }
    this.active++
    this.queue.push(q)
    if (signal !== undefined) {
      const onAbort = (): void => {
        if (q.phase !== 'queued' && q.phase !== 'running') return
        q.fail(signal.reason, true)
        this.cancel(q)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      q.stopListening = () => {
        signal.removeEventListener('abort', onAbort)
      }
    }
    this.dispatch()
    return q
  }

  stats(): ReaderPoolStats {
    return {
      processes: this.slots.length,
      busy: this.slots.filter((s) => s.running !== null).length,
      queued: this.queue.length,
      replaced: this.replaced,
      batches: this.batches,
      rowsTooLarge: this.rowsTooLarge,
      recycled: this.recycled,
    }
  }

  /** Refuses new queries (CLOSED), fails queued and running ones, kills the readers. */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true
      const closedError = (): QueryError => new QueryError('CLOSED', 'the reader pool is closed')
      for (const q of this.queue.splice(0)) {
        q.fail(closedError(), true)
        this.settle(q)
      }
      for (const slot of this.slots) {
        if (slot.graceTimer !== null) clearTimeout(slot.graceTimer)
        slot.graceTimer = null
        const q = slot.running
        slot.running = null
        if (q !== null) {
          q.fail(closedError(), true)
          this.settle(q)
        }
        slot.onStarted?.('the reader pool was closed')
        slot.onStarted = null
        this.retire(slot.reader)
      }
    }
    await Promise.all([...this.exiting])
  }

  // ---------------------------------------------------------------- readers

  private spawn(): ChildProcess {
    // Compiled, this module is dist/query/reader-pool.js next to reader-worker.js; under tsx
    // (tests, bench) it is the .ts source, and the reader needs tsx to load its .ts file.
    const fromSource = import.meta.url.endsWith('.ts')
    const entry = new URL(fromSource ? './reader-worker.ts' : './reader-worker.js', import.meta.url)
    const reader = fork(fileURLToPath(entry), [this.path], {
      // Structured clone over the IPC channel: keeps bigint apart from number, and Uint8Array.
      serialization: 'advanced',
      // --expose-gc: a reader that a query left large collects garbage before it reports its
      // size (reader-worker.ts).
      execArgv: fromSource
        ? ['--import', 'tsx', '--expose-gc']
        : [...process.execArgv.filter((a) => a === '--enable-source-maps'), '--expose-gc'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    track(reader)
    return reader
  }

  private newSlot(onStarted: ((failure: string | null) => void) | null): Slot {
    const slot: Slot = {
      reader: this.spawn(),
      state: 'starting',
      running: null,
      graceTimer: null,
      failure: null,
      onStarted,
    }
    this.listen(slot)
    return slot
  }

  private listen(slot: Slot): void {
    const reader = slot.reader
    reader.on('message', (message: FromWorker) => {
      if (!this.closed && slot.reader === reader) this.onMessage(slot, message)
    })
    reader.on('error', (err: unknown) => {
      // Failed to start, or a message sent after it died: its 'exit' follows or has come.
      if (slot.reader === reader) slot.failure ??= messageOf(err)
    })
    reader.on('exit', (code: number | null, signal: NodeJS.Signals | null) => {
      if (!this.closed && slot.reader === reader) {
        this.onExit(slot, signal === null ? `exit code ${code ?? 'unknown'}` : `signal ${signal}`)
      }
    })
  }

  private started(slot: Slot, failure: string | null): void {
    const onStarted = slot.onStarted
    slot.onStarted = null
    onStarted?.(failure)
  }

  private onMessage(slot: Slot, message: FromWorker): void {
    switch (message.type) {
      case 'ready':
        slot.state = 'idle'
        this.started(slot, null)
        this.dispatch()
        return
      case 'open-failed':
        slot.state = 'failed'
        slot.failure = message.message
        this.started(slot, message.message)
        this.retire(slot.reader)
        this.dispatch()
        return
      case 'columns':
        this.runningQuery(slot, message.id)?.push({ kind: 'columns', columns: message.columns })
        return
      case 'rows':
        this.batches++
        this.runningQuery(slot, message.id)?.push({ kind: 'rows', rows: message.rows })
        return
      case 'end':
        this.runningQuery(slot, message.id)?.push({ kind: 'end', timeS: message.timeS })
        this.release(slot, message.id, message.rss)
        return
      case 'error':
        if (message.code === 'ROW_TOO_LARGE') this.rowsTooLarge++
        this.runningQuery(slot, message.id)?.fail(
          new QueryError(message.code, message.message, { sqliteCode: message.sqliteCode }),
          false,
        )
        this.release(slot, message.id, message.rss)
        return
      case 'cancelled':
        this.release(slot, message.id, message.rss)
        return
    }
  }

  /** A reader ended without being told to: fail its query and start another in its place. */
  private onExit(slot: Slot, how: string): void {
    if (slot.state === 'failed') return
    const reason = slot.failure ?? how
    if (slot.state === 'starting') {
      slot.state = 'failed'
      slot.failure = reason
      this.started(slot, reason)
      this.dispatch()
      return
    }
    this.replace(slot, new QueryError('SQL_ERROR', `the reader process stopped: ${reason}`))
  }

  /** Kills the slot's reader and starts a fresh one; its query (if any) ends. */
  private replace(slot: Slot, error: QueryError | null): void {
    if (slot.graceTimer !== null) clearTimeout(slot.graceTimer)
    slot.graceTimer = null
    const q = slot.running
    slot.running = null
    if (q !== null) {
      if (error !== null) q.fail(error, true)
      this.settle(q)
    }
    this.retire(slot.reader)
    this.replaced++
    slot.state = 'starting'
    slot.failure = null
    slot.reader = this.spawn()
    this.listen(slot)
  }

  /**
   * Ends a reader with SIGKILL: a read-only connection has nothing to lose, and a reader
   * inside a long SQLite step could not act on anything gentler.
   */
  private retire(reader: ChildProcess): void {
    if (reader.exitCode !== null || reader.signalCode !== null) return
    const exited = new Promise<void>((resolve) => {
      reader.once('exit', () => {
        resolve()
      })
    })
    this.exiting.add(exited)
    void exited.then(() => this.exiting.delete(exited))
    reader.kill('SIGKILL')
  }

  private post(slot: Slot, message: ToWorker): void {
    if (slot.reader.connected) slot.reader.send(message)
  }

  // ---------------------------------------------------------------- queries

  private runningQuery(slot: Slot, id: number): Query | undefined {
    const q = slot.running
    return q !== null && q.id === id && q.phase === 'running' ? q : undefined
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (this.queue.length === 0) return
      if (slot.state !== 'idle') continue
      const q = this.queue.shift()
      if (q !== undefined) this.start(slot, q)
    }
    if (this.queue.length > 0 && this.slots.every((s) => s.state === 'failed')) {
      const reason = this.slots.find((s) => s.failure !== null)?.failure ?? 'unknown'
      for (const q of this.queue.splice(0)) {
        q.fail(
          new QueryError('CLOSED', `no reader thread could open the database: ${reason}`),
          true,
        )
        this.settle(q)
      }
    }
  }

  private start(slot: Slot, q: Query): void {
    slot.state = 'busy'
    slot.running = q
    q.slot = slot
    q.phase = 'running'
    if (this.timeoutMs > 0) {
      q.timer = setTimeout(() => {
        if (q.phase !== 'running') return
        q.fail(new QueryError('TIMEOUT', `query took longer than ${this.timeoutMs} ms`), true)
        this.cancel(q)
      }, this.timeoutMs)
    }
    try {
      this.post(slot, {
        type: 'query',
        id: q.id,
        sql: q.sql,
        params: q.params,
        batchRows: this.batchRows,
        batchBytes: this.batchBytes,
        maxRowBytes: this.maxRowBytes,
        credit: READER_BATCHES_IN_FLIGHT_MAX,
      })
    } catch (err) {
      // Parameters that cannot be cloned (the types allow none, but JavaScript callers might).
      q.fail(new QueryError('SQL_ERROR', messageOf(err), { cause: err }), true)
      this.release(slot, q.id, 0)
    }
  }

  /** The consumer took a batch: the reader may read one more. */
  private credit(q: Query): void {
    if (q.phase === 'running' && q.slot !== null) {
      this.post(q.slot, { type: 'credit', id: q.id, n: 1 })
    }
  }

  /** The consumer is gone (return, abort, timeout): drop the query from the queue or reader. */
  private cancel(q: Query): void {
    if (q.phase === 'queued') {
      const i = this.queue.indexOf(q)
      if (i >= 0) this.queue.splice(i, 1)
      this.settle(q)
      return
    }
    const slot = q.slot
    if (q.phase !== 'running' || slot === null) return
    q.phase = 'cancelling'
    this.post(slot, { type: 'cancel', id: q.id })
    slot.graceTimer = setTimeout(() => {
      slot.graceTimer = null
      if (!this.closed && slot.running === q) this.replace(slot, null)
    }, CANCEL_GRACE_MS)
  }

  /**
   * The reader finished query `id` (end, error or cancelled) and is `rss` bytes large: it takes
   * the next one, or a fresh reader takes its place when it stayed large.
   */
  private release(slot: Slot, id: number, rss: number): void {
    const q = slot.running
    if (q?.id !== id) return
    if (rss > this.recycleRssBytes) {
      this.recycled++
      this.replace(slot, null)
      return
    }
    if (slot.graceTimer !== null) clearTimeout(slot.graceTimer)
    slot.graceTimer = null
    slot.running = null
    slot.state = 'idle'
    this.settle(q)
    this.dispatch()
  }

  /** The query no longer counts against maxConcurrent; its timer and listener go. */
  private settle(q: Query): void {
    if (q.phase === 'finished') return
    q.phase = 'finished'
    q.slot = null
    this.active--
    if (q.timer !== null) clearTimeout(q.timer)
    q.timer = null
    q.stopListening?.()
    q.stopListening = null
  }
}
