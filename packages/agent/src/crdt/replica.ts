/**
 * A replica: one SQLite database whose replicated tables merge like CRDTs.
 *
 * The replica owns the only writer connection. Local writes run through `transaction()`, which
 * gives the transaction its version and lets the capture triggers stamp every changed cell;
 * remote changes run through `apply()`, which merges them cell by cell (merge.ts) with capture
 * off. Both record which versions of which origin the database holds in the same SQLite
 * transaction as the data, so a crash can never leave the two out of step.
 *
 * @example
 * const replica = Replica.open('data/state.db')
 * replica.applySchema([{ path: 'schema.sql', sql: 'CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT)' }])
 * const { version } = replica.transaction([{ sql: 'INSERT INTO t VALUES (?, ?)', params: [1n, 'a'] }])
 * const changes = replica.changesFor(replica.actorId, version!)
 */
import { ACTOR_ID_BYTES, actorIdHex } from '../runtime/actor-id.ts'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import type Database from 'better-sqlite3'
import { BUFFER_CELLS_MAX, CELL_BYTES_MAX, STATEMENT_CACHE_MAX } from '../config/defaults.ts'
import { diffSchema } from '../schema/diff-schema.ts'
import { isEmptyPlan, type SchemaPlan } from '../schema/model.ts'
import { parseSchema } from '../schema/parse-schema.ts'
import { readCurrentSchema } from '../schema/read-schema.ts'
import { StatementDeadline } from '../store/deadline.ts'
import { openDb, type Synchronous } from '../store/open-db.ts'
import { checkVersionCells, holdsOversized } from './cell-size.ts'
import type { Change, Changeset, FullChangeset } from './changes.ts'
import { readCrrTable, type CrrTable } from './crr-table.ts'
import { ReplicaError } from './errors.ts'
import {
  emptyRowState,
  mergeRow,
  type CellClock,
  type IncomingCell,
  type Mechanisms,
  type RowState,
  type Stamp,
} from './merge.ts'
import { IntegrityError, inspect, installTriggers } from './integrity.ts'
import {
  CAPTURE_FUNCTION,
  isInternalName,
  LEGACY_CAPTURE_FUNCTION,
  q,
  SENTINEL_CID,
} from './names.ts'
import { packPk, unpackPk } from './pk-codec.ts'
import { StatementGuard } from './statement-guard.ts'
import { TableStatements } from './table-statements.ts'
import { checkVersionText, holdsReplacement } from './text-check.ts'
import {
  addColumnMetadataSql,
  BOOKKEEPING_DDL,
  createMetadataSql,
  dropTriggersSql,
  triggerDefs,
} from './table-ddl.ts'
import { coversRange, VersionBuffer, type BufferedVersion } from './version-buffer.ts'
import {
  emptyOriginVersions,
  holds,
  recordHeld,
  type OriginVersions,
  type VersionRange,
} from './version-ranges.ts'
import type { SqlValue } from './values.ts'

export interface ReplicaOptions {
  readonly synchronous?: Synchronous
  /** Site id for a new database (16 bytes); random when absent. Ignored for an existing one. */
  readonly actorId?: Uint8Array
  /**
   * For tests only: switch off a core mechanism (causal length, tie-breaks, gap bookkeeping)
   * to prove that the test suite notices its loss.
   */
  /** Cap on cells buffered for incomplete or parked versions; default BUFFER_CELLS_MAX. */
  readonly bufferCellsMax?: number
  /**
   * Milliseconds a local transaction may run (`[perf] sql_tx_timeout`); past it, it is
   * interrupted and rolled back (TRANSACTION_TIMEOUT). Absent or 0: no deadline. Needs the
   * native extension (store/deadline.ts); without it `deadlineProblem` says why.
   */
  readonly txTimeoutMs?: number
  /**
   * Largest value (TEXT as UTF-8 bytes, BLOB bytes) a local write may store; larger fails with
   * CELL_TOO_LARGE (cell-size.ts). Default CELL_BYTES_MAX (`[perf] max_cell_bytes`).
   */
  readonly maxCellBytes?: number
  readonly disable?: {
    readonly causalLength?: boolean
    readonly tieBreak?: boolean
    readonly gaps?: boolean
  }
}

export type Params = readonly SqlValue[] | Readonly<Record<string, SqlValue>>

export interface Statement {
  readonly sql: string
  readonly params?: Params
}

export interface StatementResult {
  readonly rowsAffected: number
  /** Seconds the statement took. */
  readonly timeS: number
}

export interface TransactionResult {
  readonly results: readonly StatementResult[]
  /** The version this transaction got, or null when it changed nothing. */
  readonly version: number | null
}

export interface OriginState {
  readonly actorId: Uint8Array
  readonly head: number
  readonly gaps: readonly VersionRange[]
}

/** A row a committed transaction changed: created, updated or deleted. */
export interface ChangedRow {
  readonly table: string
  /** The primary key, packed (pk-codec.ts). */
  readonly pk: Uint8Array
  /** True when the row no longer exists after the commit. */
  readonly deleted: boolean
}

/**
 * Emitted after every commit that changed replicated rows, in commit order: local writes (with
 * the version's changeset, ready to send) and merges of remote changes.
 */
export type CommitEvent =
  | {
      readonly source: 'local'
      readonly rows: readonly ChangedRow[]
      readonly changeset: FullChangeset
    }
  | { readonly source: 'remote'; readonly rows: readonly ChangedRow[] }

export type CommitListener = (event: CommitEvent) => void

/**
 * What became of a changeset:
 * - applied: merged and booked;
 * - duplicate: already held (or already buffered): nothing done;
 * - buffered: one chunk of a larger version, stored until every chunk is there;
 * - parked: complete but not applicable yet (unknown table or column, a constraint): stored and
 *   retried after every schema change; `reason` says why;
 * - dropped: the buffer is at its cap; not stored (anti-entropy will fetch it again);
 * - refused: malformed (bad actor id, version, clock or key); `reason` says what.
 */
export type ApplyStatus = 'applied' | 'duplicate' | 'buffered' | 'parked' | 'dropped' | 'refused'

export interface ChangesetOutcome {
  readonly actorId: Uint8Array
  readonly versions: VersionRange
  readonly status: ApplyStatus
  /** True when the status is `applied`. */
  readonly applied: boolean
  readonly reason?: string
  /** Per change of a full changeset: did it change this replica? */
  readonly won: readonly boolean[]
}

/** Default cap on cells buffered for incomplete or parked versions (config/defaults.ts). */
export { BUFFER_CELLS_MAX }

type Mode = 'idle' | 'capture' | 'merge'

const INTERNAL_DDL = BOOKKEEPING_DDL

export class Replica {
  readonly db: Database.Database
  readonly actorId: Uint8Array
  private mode: Mode = 'idle'
  private pendingVersion = 0
  private seq = 0
  /**
   * True once the current local transaction stored a string holding U+FFFD (text-check.ts);
   * transaction() clears it when the transaction ends.
   */
  private textSuspect = false
  /** The write stored a value that may be over `maxCellBytes` (cell-size.ts step 1). */
  private cellSuspect = false
  private maxCellBytes = CELL_BYTES_MAX
  private readonly tables = new Map<string, TableStatements>()
  private readonly actorIds: Uint8Array[] = []
  private readonly siteOrdinals = new Map<string, number>()
  private readonly origins = new Map<number, OriginVersions>()
  private readonly userStatements = new Map<string, Database.Statement>()
  private readonly mechanisms: Mechanisms
  private readonly commitListeners = new Set<CommitListener>()
  private mergedRows: ChangedRow[] = []
  /** Exceptions thrown by commit listeners (they are isolated from the write path). */
  listenerErrors = 0
  private readonly trackGaps: boolean
  private readonly buffer: VersionBuffer
  private readonly bufferCellsMax: number
  private readonly guard: StatementGuard
  private readonly changesStmt: Database.Statement
  private readonly stmts: {
    readonly setHead: Database.Statement
    readonly clearGaps: Database.Statement
    readonly addGap: Database.Statement
  }
  private readonly runWrite: Database.Transaction<
    (statements: readonly Statement[]) => TransactionResult
  >
  /** Bounds local transactions to txTimeoutMs; null without a timeout or the extension. */
  private deadline: StatementDeadline | null = null
  private txTimeoutMs = 0
  /** Why local transactions have no deadline although txTimeoutMs asks for one, or null. */
  deadlineProblem: string | null = null

  private constructor(db: Database.Database, options: ReplicaOptions) {
    this.db = db
    const requestedActorId = options.actorId
    this.mechanisms = {
      causalLength: options.disable?.causalLength !== true,
      tieBreak: options.disable?.tieBreak !== true,
    }
    this.trackGaps = options.disable?.gaps !== true
    this.guard = new StatementGuard(db)
    this.changesStmt = db.prepare('SELECT changes()').pluck().safeIntegers(false)
    this.registerFunctions(options)
    db.transaction(() => {
      for (const sql of INTERNAL_DDL) db.exec(sql)
      const self = db.prepare('SELECT site_id FROM __patina_sites WHERE ordinal = 0').pluck().get()
      if (self === undefined) {
        const id = requestedActorId ?? randomBytes(ACTOR_ID_BYTES)
        assert.equal(id.length, ACTOR_ID_BYTES, 'a actor id is 16 bytes')
        db.prepare('INSERT INTO __patina_sites (ordinal, site_id) VALUES (0, ?)').run(id)
      }
    }).immediate()
    this.stmts = {
      setHead: db.prepare(
        'INSERT INTO __patina_heads (site, head) VALUES (?, ?) ' +
          'ON CONFLICT (site) DO UPDATE SET head = excluded.head',
      ),
      clearGaps: db.prepare('DELETE FROM __patina_gaps WHERE site = ?'),
      addGap: db.prepare('INSERT INTO __patina_gaps (site, start_v, end_v) VALUES (?, ?, ?)'),
    }
    this.runWrite = db.transaction((statements: readonly Statement[]) => this.write(statements))
    this.buffer = new VersionBuffer(db)
    this.bufferCellsMax = options.bufferCellsMax ?? BUFFER_CELLS_MAX
    this.loadSites()
    this.actorId = this.actorIds[0] as Uint8Array
    this.regenerateTriggers()
    this.loadTables()
    this.loadOrigins()
  }

  static open(path: string, options: ReplicaOptions = {}): Replica {
    const db = openDb(
      path,
      options.synchronous === undefined ? {} : { synchronous: options.synchronous },
    )
    try {
      const replica = new Replica(db, options)
      const ms = options.txTimeoutMs ?? 0
      if (ms > 0) {
        const deadline = StatementDeadline.load(db)
        if (typeof deadline === 'string') replica.deadlineProblem = deadline
        else replica.deadline = deadline
        replica.txTimeoutMs = ms
      }
      return replica
    } catch (err) {
      db.close()
      throw err
    }
  }

  /** True when local transactions run under the txTimeoutMs deadline. */
  get deadlineEnabled(): boolean {
    return this.deadline !== null
  }

  close(): void {
    this.db.close()
  }

  // ---------------------------------------------------------------- functions used by triggers

  private registerFunctions(options: ReplicaOptions): void {
    this.maxCellBytes = options.maxCellBytes ?? CELL_BYTES_MAX
    const outside = (): never => {
      throw new ReplicaError(
        'WRITE_OUTSIDE_PATINA',
        "writes to replicated tables must go through Patina's write path",
      )
    }
    // Its name is what SQLite prints where it is missing: "no such function:
    // write_through_the_patina_agent". The old name serves triggers of a database an older
    // Patina wrote, until they are regenerated at open.
    const capturing = (): number => {
      if (this.mode === 'capture') return 1
      if (this.mode === 'merge') return 0
      return outside()
    }
    for (const name of [CAPTURE_FUNCTION, LEGACY_CAPTURE_FUNCTION]) {
      this.db.function(name, { deterministic: false, varargs: false }, capturing)
    }
    this.db.function('patina_dbv', { deterministic: false }, () =>
      this.mode === 'capture' ? this.pendingVersion : outside(),
    )
    // Both also get the values the write stores in the cells they stamp (TEXT as strings,
    // BLOBs as their lengths): a string holding U+FFFD makes the transaction check its TEXT
    // bytes before it commits (text-check.ts), a value that may be over maxCellBytes its cell
    // sizes (cell-size.ts). safeIntegers off: numbers cost less than bigints.
    const seqOptions = { deterministic: false, varargs: true, safeIntegers: false }
    this.db.function('patina_seq', seqOptions, (...stored: unknown[]) => {
      if (this.mode !== 'capture') return outside()
      if (!this.textSuspect) this.textSuspect = holdsReplacement(stored)
      if (!this.cellSuspect) this.cellSuspect = holdsOversized(stored, this.maxCellBytes)
      return this.seq++
    })
    // A block of `n` consecutive seqs (one per column of an inserted row): returns the first.
    this.db.function('patina_seqs', seqOptions, (n: unknown, ...stored: unknown[]) => {
      if (this.mode !== 'capture') return outside()
      if (!this.textSuspect) this.textSuspect = holdsReplacement(stored)
      if (!this.cellSuspect) this.cellSuspect = holdsOversized(stored, this.maxCellBytes)
      const first = this.seq
      this.seq += Number(n)
      return first
    })
  }

  // ---------------------------------------------------------------- loading state

  private loadSites(): void {
    this.actorIds.length = 0
    this.siteOrdinals.clear()
    const rows = this.db
      .prepare('SELECT ordinal, site_id FROM __patina_sites ORDER BY ordinal')
      .raw()
      .all() as [bigint, Buffer][]
    for (const [ordinal, id] of rows) {
      this.actorIds[Number(ordinal)] = new Uint8Array(id)
      this.siteOrdinals.set(id.toString('hex'), Number(ordinal))
    }
  }

  /**
   * Checks that the database is the way Patina left it (integrity.ts) and refuses to open it
   * otherwise (IntegrityError). Then recreates the triggers the current code generates
   * differently (written by an older Patina), so the database captures writes the way this
   * one does. Writes nothing when every trigger is current (so a full disk does not stop the
   * open). O(tables), no row is touched.
   */
  private regenerateTriggers(): void {
    const found = inspect(this.db)
    if (found.problems.length > 0) throw new IntegrityError(this.db.name, found.problems)
    if (found.install.length === 0 && found.retire.length === 0) return
    this.db
      .transaction(() => {
        installTriggers(this.db, found.install, found.retire)
      })
      .immediate()
  }

  private loadTables(): void {
    this.tables.clear()
    const names = this.db
      .prepare('SELECT name FROM __patina_tables ORDER BY name')
      .pluck()
      .all() as string[]
    for (const name of names) {
      this.tables.set(name.toLowerCase(), new TableStatements(this.db, readCrrTable(this.db, name)))
    }
  }

  private loadOrigins(): void {
    this.origins.clear()
    for (const [site, head] of this.db
      .prepare('SELECT site, head FROM __patina_heads')
      .raw()
      .all() as [bigint, bigint][]) {
      this.origins.set(Number(site), { head: Number(head), gaps: [] })
    }
    for (const [site, start, end] of this.db
      .prepare('SELECT site, start_v, end_v FROM __patina_gaps ORDER BY site, start_v')
      .raw()
      .all() as [bigint, bigint, bigint][]) {
      const origin = this.origins.get(Number(site))
      assert.ok(origin !== undefined, 'a gap row has a head row')
      origin.gaps.push([Number(start), Number(end)])
    }
  }

  private origin(site: number): OriginVersions {
    let origin = this.origins.get(site)
    if (origin === undefined) {
      origin = emptyOriginVersions()
      this.origins.set(site, origin)
    }
    return origin
  }

  private persistOrigin(site: number): void {
    const origin = this.origin(site)
    this.stmts.setHead.run(site, origin.head)
    this.stmts.clearGaps.run(site)
    for (const [start, end] of origin.gaps) this.stmts.addGap.run(site, start, end)
  }

  /** The local ordinal of a actor id, registering it when `create` is set. */
  private siteOrdinal(actorId: Uint8Array, create: boolean): number | undefined {
    const hex = actorIdHex(actorId)
    const known = this.siteOrdinals.get(hex)
    if (known !== undefined || !create) return known
    if (actorId.length !== ACTOR_ID_BYTES) {
      throw new ReplicaError('INVALID_CHANGE', `actor id ${hex} is not ${ACTOR_ID_BYTES} bytes`)
    }
    const inserted: unknown = this.db
      .prepare('INSERT INTO __patina_sites (site_id) VALUES (?) RETURNING ordinal')
      .pluck()
      .get(Buffer.from(actorId))
    const ordinal = Number(inserted)
    this.actorIds[ordinal] = new Uint8Array(actorId)
    this.siteOrdinals.set(hex, ordinal)
    return ordinal
  }

  // ---------------------------------------------------------------- commit events

  /**
   * Calls `listener` after every commit that changed rows. A listener that throws does not
   * affect the write or other listeners (the error is counted in `listenerErrors`). Returns a
   * function that removes the listener.
   */
  onCommit(listener: CommitListener): () => void {
    this.commitListeners.add(listener)
    return () => {
      this.commitListeners.delete(listener)
    }
  }

  private emit(event: CommitEvent): void {
    for (const listener of this.commitListeners) {
      try {
        listener(event)
      } catch {
        this.listenerErrors++
      }
    }
  }

  // ---------------------------------------------------------------- schema

  /** Names of the replicated tables. */
  tableNames(): string[] {
    return [...this.tables.values()].map((t) => t.table.name)
  }

  table(name: string): CrrTable | undefined {
    return this.tables.get(name.toLowerCase())?.table
  }

  /**
   * Brings the database to the schema in `sources` (the contents of `.sql` files). Only
   * additions are applied (new tables, new nullable or defaulted columns, new or dropped
   * indexes); anything destructive throws a SchemaError and changes nothing. Adding a column
   * writes no metadata row and consumes no version: a cell without a clock is its DEFAULT.
   */
  applySchema(sources: readonly { path: string; sql: string }[]): SchemaPlan {
    const desired = parseSchema(sources)
    const current = readCurrentSchema(this.db, isInternalName)
    const plan = diffSchema(current, desired)
    if (isEmptyPlan(plan)) return plan
    this.db
      .transaction(() => {
        for (const index of plan.dropIndexes) this.db.exec(`DROP INDEX ${q(index.name)}`)
        for (const table of plan.newTables) {
          this.db.exec(table.sql)
          const crr = readCrrTable(this.db, table.name)
          for (const sql of createMetadataSql(crr)) this.db.exec(sql)
          installTriggers(this.db, triggerDefs(crr))
          this.db.prepare('INSERT INTO __patina_tables (name) VALUES (?)').run(table.name)
        }
        const altered = new Set<string>()
        for (const { table, column } of plan.newColumns) {
          this.db.exec(`ALTER TABLE ${q(table)} ADD COLUMN ${column.definitionSql}`)
          for (const sql of addColumnMetadataSql(readCrrTable(this.db, table), column.name)) {
            this.db.exec(sql)
          }
          altered.add(table)
        }
        for (const table of altered) {
          const crr = readCrrTable(this.db, table)
          for (const sql of dropTriggersSql(crr)) this.db.exec(sql)
          installTriggers(this.db, triggerDefs(crr))
        }
        for (const index of plan.createIndexes) this.db.exec(index.sql)
      })
      .immediate()
    this.userStatements.clear()
    this.loadTables()
    this.retryParked()
    return plan
  }

  // ---------------------------------------------------------------- local writes

  /** Prepares a user statement, refusing what the statement guard refuses. */
  private prepareUser(sql: string, args: readonly unknown[]): Database.Statement {
    const verdict = this.guard.check(sql, args)
    if (!verdict.ok) throw new ReplicaError('STATEMENT_NOT_ALLOWED', verdict.reason)
    let stmt = this.userStatements.get(sql)
    if (stmt === undefined) {
      stmt = this.db.prepare(sql)
      if (this.userStatements.size >= STATEMENT_CACHE_MAX) {
        const oldest = this.userStatements.keys().next().value
        if (oldest !== undefined) this.userStatements.delete(oldest)
      }
    } else {
      this.userStatements.delete(sql)
    }
    this.userStatements.set(sql, stmt)
    return stmt
  }

  /**
   * Runs the statements in one write transaction (BEGIN IMMEDIATE). Any failure rolls back
   * everything and consumes no version. A transaction that changes no replicated cell consumes
   * no version either (`version: null`); otherwise it gets the next dense local version.
   * With `txTimeoutMs`, a transaction still running after it is interrupted and rolled back:
   * TRANSACTION_TIMEOUT.
   */
  transaction(statements: readonly Statement[]): TransactionResult {
    assert.equal(this.mode, 'idle', 'transactions do not nest')
    try {
      const result = this.runBounded(statements)
      if (result.version !== null) {
        this.origin(0).head = result.version
        if (this.commitListeners.size > 0) {
          const changeset = this.changesFor(this.actorId, result.version) as FullChangeset
          this.mode = 'idle'
          this.emit({ source: 'local', rows: rowsOf(changeset.changes), changeset })
        }
      }
      return result
    } finally {
      this.mode = 'idle'
      this.textSuspect = false
      this.cellSuspect = false
    }
  }

  /** runWrite under the deadline (from BEGIN to COMMIT), when there is one. */
  private runBounded(statements: readonly Statement[]): TransactionResult {
    if (this.deadline === null) return this.runWrite.immediate(statements)
    const outcome = this.deadline.run(this.txTimeoutMs, () => this.runWrite.immediate(statements))
    if (outcome.ok) return outcome.value
    // better-sqlite3 rolled back, unless the interrupt also hit its ROLLBACK.
    if (this.db.inTransaction) this.db.exec('ROLLBACK')
    const code = (outcome.error as { code?: unknown } | null)?.code
    if (outcome.timedOut || code === 'SQLITE_INTERRUPT') {
      throw new ReplicaError(
        'TRANSACTION_TIMEOUT',
        `transaction ran past [perf] sql_tx_timeout (${this.txTimeoutMs / 1000} s) ` +
          'and was rolled back',
        { cause: outcome.error },
      )
    }
    throw outcome.error
  }

  /** The body of a local write transaction (runs inside BEGIN IMMEDIATE). */
  private write(statements: readonly Statement[]): TransactionResult {
    this.mode = 'capture'
    this.pendingVersion = this.origin(0).head + 1
    this.seq = 0
    const results = statements.map((s): StatementResult => {
      const started = performance.now()
      const args = s.params === undefined ? [] : [s.params]
      const stmt = this.prepareUser(s.sql, args)
      let rowsAffected: number
      if (stmt.reader) {
        // A SELECT, or a write with RETURNING (its rows are not returned, as in Corrosion).
        stmt.all(...args)
        rowsAffected = stmt.readonly ? 0 : (this.changesStmt.get() as number)
      } else {
        rowsAffected = stmt.run(...args).changes
      }
      return { rowsAffected, timeS: (performance.now() - started) / 1000 }
    })
    let version: number | null = null
    if (this.seq > 0) {
      version = this.pendingVersion
      // Throws INVALID_TEXT (and so rolls back) if the version would carry ill-formed UTF-8.
      if (this.textSuspect) {
        checkVersionText(
          this.db,
          [...this.tables.values()].map((t) => t.table),
          version,
        )
      }
      // Throws CELL_TOO_LARGE (and so rolls back) if it stored a value over maxCellBytes.
      if (this.cellSuspect) {
        checkVersionCells(
          this.db,
          [...this.tables.values()].map((t) => t.table),
          version,
          this.maxCellBytes,
        )
      }
      this.stmts.setHead.run(0, version)
    }
    return { results, version }
  }

  /** Runs a read-only query on the writer connection (tests and tools; the API has readers). */
  query(sql: string, params?: Params): Record<string, SqlValue>[] {
    const stmt = this.db.prepare(sql)
    if (!stmt.readonly) {
      throw new ReplicaError(
        'WRITE_OUTSIDE_PATINA',
        'query() is read-only; write with transaction()',
      )
    }
    return (params === undefined ? stmt.all() : stmt.all(params)) as Record<string, SqlValue>[]
  }

  // ---------------------------------------------------------------- bookkeeping

  /** What this replica holds, per origin: head version and missing ranges. */
  originStates(): OriginState[] {
    return [...this.origins.entries()]
      .filter(([, o]) => o.head > 0)
      .map(([site, o]) => ({
        actorId: this.actorIds[site] as Uint8Array,
        head: o.head,
        gaps: o.gaps.map(([s, e]) => [s, e] as const),
      }))
  }

  /** The highest version of `actorId` this replica holds or knows of (0 when none). */
  headOf(actorId: Uint8Array): number {
    const site = this.siteOrdinal(actorId, false)
    return site === undefined ? 0 : this.origin(site).head
  }

  /** True when this replica holds version `version` of `actorId`. */
  holds(actorId: Uint8Array, version: number): boolean {
    const site = this.siteOrdinal(actorId, false)
    return site !== undefined && holds(this.origin(site), version)
  }

  // ---------------------------------------------------------------- reading changes

  /**
   * The cells this replica still holds of version `version` of origin `actorId`, ordered by
   * seq: a full changeset (possibly with no changes, when every cell was overwritten since),
   * or null when the replica does not hold that version.
   */
  changesFor(actorId: Uint8Array, version: number): FullChangeset | null {
    const site = this.siteOrdinal(actorId, false)
    if (site === undefined || !holds(this.origin(site), version)) return null
    const changes: Change[] = []
    for (const t of this.tables.values()) t.readVersion(site, version, actorId, changes)
    changes.sort((a, b) => a.seq - b.seq)
    const last = changes.at(-1)
    return { kind: 'full', actorId, version, changes, lastSeq: last === undefined ? 0 : last.seq }
  }

  // ---------------------------------------------------------------- applying remote changes

  /**
   * Applies changesets from other replicas in one SQLite transaction. Versions already held are
   * skipped; chunks of a larger version are buffered until the version is complete, then merged
   * at once; a version that names an unknown table or column, or that breaks a constraint, is
   * parked (stored) and retried after the next schema change. Each changeset is merged in its own
   * savepoint, so one bad changeset never blocks the others. Bookkeeping (head, gaps, buffer) is
   * written in the same transaction as the data. Never throws for a bad changeset: see the
   * outcome's `status`.
   */
  apply(changesets: readonly Changeset[]): ChangesetOutcome[] {
    assert.equal(this.mode, 'idle', 'apply does not nest')
    const problems = changesets.map((cs) => structuralProblem(cs))
    // Site ordinals are local and harmless to keep, so they are registered up front.
    this.db
      .transaction(() => {
        changesets.forEach((cs, i) => {
          if (problems[i] !== null) return
          this.siteOrdinal(cs.actorId, true)
          if (cs.kind === 'full') for (const c of cs.changes) this.siteOrdinal(c.actorId, true)
        })
      })
      .immediate()
    const touched = new Set<number>()
    const run = this.db.transaction(() => {
      this.mode = 'merge'
      const outcomes = changesets.map((cs, i): ChangesetOutcome => {
        const problem = problems[i] ?? null
        const versions: VersionRange = cs.kind === 'full' ? [cs.version, cs.version] : cs.versions
        if (problem !== null) return outcome(cs, versions, 'refused', [], problem)
        const site = this.siteOrdinal(cs.actorId, false) as number
        const origin = this.origin(site)
        if (site === 0 || holdsAll(origin, versions)) return outcome(cs, versions, 'duplicate')
        if (cs.kind === 'empty') {
          // Every cell of these versions was overwritten: whatever is buffered of them is moot.
          for (const entry of this.buffer.all()) {
            if (entry.site === site && entry.version >= versions[0] && entry.version <= versions[1])
              this.buffer.delete(entry)
          }
          recordHeld(origin, versions[0], versions[1], this.trackGaps)
          touched.add(site)
          return outcome(cs, versions, 'applied')
        }
        return this.applyFull(cs, site, origin, touched)
      })
      for (const site of touched) this.persistOrigin(site)
      return outcomes
    })
    return this.runMerge(run)
  }

  /**
   * Runs a merge transaction (BEGIN IMMEDIATE), then tells the commit listeners which rows it
   * changed. On failure the in-memory bookkeeping, which ran ahead of the rolled-back
   * transaction, is reloaded.
   */
  private runMerge<T>(run: Database.Transaction<() => T>): T {
    this.mergedRows = []
    try {
      const result = run.immediate()
      const rows = this.mergedRows
      this.mergedRows = []
      this.mode = 'idle'
      if (rows.length > 0) this.emit({ source: 'remote', rows })
      return result
    } catch (err) {
      this.loadOrigins()
      this.buffer.load()
      this.mergedRows = []
      throw err
    } finally {
      this.mode = 'idle'
    }
  }

  /** One full changeset (a whole version or one chunk of it), inside apply's transaction. */
  private applyFull(
    cs: FullChangeset,
    site: number,
    origin: OriginVersions,
    touched: Set<number>,
  ): ChangesetOutcome {
    const versions: VersionRange = [cs.version, cs.version]
    const seqs = cs.seqs ?? ([0, cs.lastSeq] as const)
    let entry = this.buffer.get(site, cs.version)
    let changes: readonly Change[] = cs.changes
    if (entry !== undefined && (entry.parked || coversRange(entry.seqs, seqs))) {
      return outcome(cs, versions, 'duplicate')
    }
    const whole = entry === undefined && seqs[0] === 0 && seqs[1] >= cs.lastSeq
    if (!whole) {
      if (this.buffer.cellCount() + cs.changes.length > this.bufferCellsMax) {
        return outcome(cs, versions, 'dropped', [], 'the version buffer is full')
      }
      entry = this.buffer.add(site, cs.version, seqs, cs.lastSeq, cs.changes)
      if (!VersionBuffer.complete(entry)) return outcome(cs, versions, 'buffered')
      changes = this.buffer.cells(entry, cs.actorId)
    }
    const merged = this.tryMerge(changes)
    if (typeof merged === 'string') {
      if (entry === undefined) {
        if (this.buffer.cellCount() + changes.length > this.bufferCellsMax) {
          return outcome(cs, versions, 'dropped', [], 'the version buffer is full')
        }
        entry = this.buffer.add(site, cs.version, seqs, cs.lastSeq, changes)
      }
      this.buffer.hold(entry, merged)
      return outcome(cs, versions, 'parked', [], merged)
    }
    if (entry !== undefined) this.buffer.delete(entry)
    recordHeld(origin, cs.version, cs.version, this.trackGaps)
    touched.add(site)
    // `won` lines up with the changes of this changeset only when it was the whole version.
    return outcome(cs, versions, 'applied', whole ? merged : [])
  }

  /**
   * Merges the changes of one version in a savepoint: all or nothing. Returns, per change,
   * whether it won, or why the version cannot be applied (it is then rolled back).
   */
  private tryMerge(changes: readonly Change[]): boolean[] | string {
    const problem = this.schemaProblem(changes)
    if (problem !== null) return problem
    const mark = this.mergedRows.length
    try {
      return this.db.transaction(() => this.mergeChanges(changes))()
    } catch (err) {
      this.mergedRows.length = mark
      return err instanceof Error ? err.message : String(err)
    }
  }

  /** Why these changes cannot be merged with the current schema, or null. */
  private schemaProblem(changes: readonly Change[]): string | null {
    // A row's cells arrive next to each other: check each distinct key once.
    let lastPk: Uint8Array | null = null
    let lastTable: TableStatements | null = null
    for (const c of changes) {
      const t = this.tables.get(c.table.toLowerCase())
      if (t === undefined) return `change for unknown table "${c.table}"`
      if (c.cid !== SENTINEL_CID && t.columnIndex(c.cid) === undefined) {
        return `change for unknown column "${c.cid}" of table "${t.table.name}"`
      }
      if (lastTable !== t || lastPk === null || Buffer.compare(lastPk, c.pk) !== 0) {
        try {
          t.checkPk(c.pk)
        } catch (err) {
          return err instanceof Error ? err.message : String(err)
        }
      }
      lastPk = c.pk
      lastTable = t
    }
    return null
  }

  /**
   * Tries again every parked version (after a schema change). Returns how many were applied.
   */
  retryParked(): number {
    const parked = this.buffer.all().filter((e) => e.parked)
    if (parked.length === 0) return 0
    assert.equal(this.mode, 'idle', 'retryParked does not nest')
    let applied = 0
    const run = this.db.transaction(() => {
      this.mode = 'merge'
      const touched = new Set<number>()
      for (const entry of parked) {
        const origin = this.actorIds[entry.site] as Uint8Array
        const merged = this.tryMerge(this.buffer.cells(entry, origin))
        if (typeof merged === 'string') {
          this.buffer.hold(entry, merged)
          continue
        }
        this.buffer.delete(entry)
        recordHeld(this.origin(entry.site), entry.version, entry.version, this.trackGaps)
        touched.add(entry.site)
        applied++
      }
      for (const site of touched) this.persistOrigin(site)
    })
    this.runMerge(run)
    return applied
  }

  /** Versions received but not applied yet: incomplete (partial) or parked. */
  bufferedVersions(): {
    actorId: Uint8Array
    version: number
    parked: boolean
    reason: string | null
    cells: number
  }[] {
    return this.buffer.all().map((e: BufferedVersion) => ({
      actorId: this.actorIds[e.site] as Uint8Array,
      version: e.version,
      parked: e.parked,
      reason: e.reason,
      cells: e.cells,
    }))
  }

  /** Cells stored for incomplete or parked versions. */
  bufferedCells(): number {
    return this.buffer.cellCount()
  }

  /** True when this replica holds every version of `range` of `actorId` (an empty chunk). */
  holdsRange(actorId: Uint8Array, range: VersionRange): boolean {
    const site = this.siteOrdinal(actorId, false)
    return site !== undefined && (site === 0 || holdsAll(this.origin(site), range))
  }

  /**
   * True when this replica already has what a chunk would bring: the version is held, or it is
   * buffered with these seqs (or parked until a schema change).
   */
  covers(actorId: Uint8Array, version: number, seqs?: VersionRange): boolean {
    const site = this.siteOrdinal(actorId, false)
    if (site === undefined) return false
    if (site === 0 || holds(this.origin(site), version)) return true
    const entry = this.buffer.get(site, version)
    if (entry === undefined) return false
    return entry.parked || (seqs !== undefined && coversRange(entry.seqs, seqs))
  }

  /**
   * Merges cells into the tables without touching bookkeeping. Must run inside a write
   * transaction in merge mode. Returns, per change, whether it changed the replica.
   */
  private mergeChanges(changes: readonly Change[]): boolean[] {
    const won = new Array<boolean>(changes.length).fill(false)
    // Group by row, keeping arrival order inside each row.
    const rows = new Map<string, { t: TableStatements; pk: Uint8Array; idx: number[] }>()
    changes.forEach((c, i) => {
      const t = this.tables.get(c.table.toLowerCase()) as TableStatements
      const key = `${t.table.name}\u0000${Buffer.from(c.pk).toString('latin1')}`
      let row = rows.get(key)
      if (row === undefined) {
        row = { t, pk: c.pk, idx: [] }
        rows.set(key, row)
      }
      row.idx.push(i)
    })
    for (const { t, pk, idx } of rows.values()) {
      const pkValues = unpackPk(pk)
      const incoming: IncomingCell[] = idx.map((i) => {
        const c = changes[i] as Change
        return {
          col: c.cid === SENTINEL_CID ? -1 : (t.columnIndex(c.cid) as number),
          val: c.val,
          colVersion: c.colVersion,
          cl: c.cl,
          site: this.siteOrdinal(c.actorId, false) as number,
          dbv: c.dbVersion,
          seq: c.seq,
        }
      })
      const prev = t.readRowState(pkValues)
      let stored: SqlValue[] | undefined
      const outcome = mergeRow(
        prev ?? emptyRowState(t.table.cols.length),
        incoming,
        {
          actorId: (ordinal) => this.actorIds[ordinal] as Uint8Array,
          storedValue: (col) => {
            stored ??= t.readValues(pkValues)
            return stored[col] ?? null
          },
        },
        this.mechanisms,
      )
      if (!outcome.changed) continue
      outcome.won.forEach((w, j) => {
        won[idx[j] as number] = w
      })
      t.writeMerged(pkValues, prev, outcome)
      if (this.commitListeners.size > 0) {
        this.mergedRows.push({ table: t.table.name, pk, deleted: outcome.state.cl % 2 === 0 })
      }
    }
    return won
  }
}

/** The rows a version's changes touch, once each, with their state after the version. */
function rowsOf(changes: readonly Change[]): ChangedRow[] {
  const rows = new Map<string, ChangedRow>()
  for (const c of changes) {
    const key = `${c.table}\u0000${Buffer.from(c.pk).toString('latin1')}`
    rows.set(key, { table: c.table, pk: c.pk, deleted: c.cl % 2 === 0 })
  }
  return [...rows.values()]
}

function outcome(
  cs: Changeset,
  versions: VersionRange,
  status: ApplyStatus,
  won: readonly boolean[] = [],
  reason?: string,
): ChangesetOutcome {
  return {
    actorId: cs.actorId,
    versions,
    status,
    applied: status === 'applied',
    won,
    ...(reason === undefined ? {} : { reason }),
  }
}

/** What is wrong with a changeset whatever the schema, or null. */
function structuralProblem(cs: Changeset): string | null {
  if (cs.actorId.length !== ACTOR_ID_BYTES) return `origin actor id must be ${ACTOR_ID_BYTES} bytes`
  if (cs.kind === 'empty') {
    const [s, e] = cs.versions
    if (!Number.isSafeInteger(s) || !Number.isSafeInteger(e) || s < 1 || e < s) {
      return `invalid version range ${s}..${e}`
    }
    return null
  }
  if (!Number.isSafeInteger(cs.version) || cs.version < 1) return `invalid version ${cs.version}`
  if (!Number.isSafeInteger(cs.lastSeq) || cs.lastSeq < 0) return `invalid last seq ${cs.lastSeq}`
  if (cs.seqs !== undefined) {
    const [s, e] = cs.seqs
    if (!Number.isSafeInteger(s) || !Number.isSafeInteger(e) || s < 0 || e < s) {
      return `invalid seq range ${s}..${e}`
    }
  }
  for (const c of cs.changes) {
    if (!(c.cl >= 1 && c.colVersion >= 1 && c.seq >= 0 && c.dbVersion >= 1)) {
      return `invalid clock in change for "${c.table}"`
    }
    if (c.actorId.length !== ACTOR_ID_BYTES)
      return `change actor id must be ${ACTOR_ID_BYTES} bytes`
  }
  return null
}

function holdsAll(origin: OriginVersions, [start, end]: VersionRange): boolean {
  if (end > origin.head) return false
  return origin.gaps.every(([gs, ge]) => ge < start || gs > end)
}

export type { CellClock, RowState, Stamp }
export { packPk, unpackPk }
