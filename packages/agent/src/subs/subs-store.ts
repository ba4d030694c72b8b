/**
 * The subscriptions database: one SQLite file (`<subscriptions_path>/subs.db`) beside the main
 * database, never inside it, holding for each subscription its statement, its current result
 * (each row with its stable rowid and identity) and its recent change events.
 *
 * Everything one evaluation changes (result rows, keys, change events, counters) is written in
 * one transaction, so after a crash the stored result and the change log agree, and the next
 * start re-runs each query against the main database and logs the differences (a commit whose
 * matching was lost in the crash is caught then).
 *
 * Evaluation results are staged in TEMP tables of this connection (no fsync, spill to disk when
 * large) in small transactions as rows arrive, then diffed against the stored result in SQL:
 * memory stays bounded whatever the size of a result.
 */
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import type { SqlValue } from '../crdt/values.ts'
import { openDb, type Synchronous } from '../store/open-db.ts'
import { changeLine, KIND_CODES, KIND_NAMES, rowLine, type ChangeKind } from './events.ts'
import { identityKeys } from './identity.ts'
import { decodeParams, encodeParams } from './params.ts'
import { SUBS_DB_CACHE_SIZE_KIB } from './subs-defaults.ts'
import { SUBS_DIFF_WINDOW_ROWS } from './slicer.ts'
import { BUSY_TIMEOUT_MS } from '../config/defaults.ts'

export const SUBS_DB_FILE = 'subs.db'
const SCHEMA_VERSION = 1

const DDL = [
  `CREATE TABLE IF NOT EXISTS subs (
    sub INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    sql_text TEXT NOT NULL,
    bound_sql TEXT NOT NULL,
    params TEXT NOT NULL,
    signature TEXT NOT NULL,
    columns TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    next_rid INTEGER NOT NULL DEFAULT 1,
    last_change INTEGER NOT NULL DEFAULT 0
  )`,
  // One row per result row. ident names it (identity.ts, or its values in full mode with occ
  // counting duplicates); pfx is the key prefix of LEFT JOIN queries.
  `CREATE TABLE IF NOT EXISTS sub_rows (
    sub INTEGER NOT NULL,
    rid INTEGER NOT NULL,
    ident BLOB NOT NULL,
    occ INTEGER NOT NULL,
    pfx BLOB,
    vals TEXT NOT NULL,
    PRIMARY KEY (sub, rid)
  ) WITHOUT ROWID`,
  'CREATE UNIQUE INDEX IF NOT EXISTS sub_rows_ident ON sub_rows (sub, ident, occ)',
  'CREATE INDEX IF NOT EXISTS sub_rows_pfx ON sub_rows (sub, pfx) WHERE pfx IS NOT NULL',
  // The packed key of each FROM item of each row: finds the rows a changed key touches.
  `CREATE TABLE IF NOT EXISTS sub_row_keys (
    sub INTEGER NOT NULL,
    item INTEGER NOT NULL,
    pk BLOB NOT NULL,
    rid INTEGER NOT NULL,
    PRIMARY KEY (sub, item, pk, rid)
  ) WITHOUT ROWID`,
  `CREATE TABLE IF NOT EXISTS sub_changes (
    sub INTEGER NOT NULL,
    change_id INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    rid INTEGER NOT NULL,
    vals TEXT NOT NULL,
    PRIMARY KEY (sub, change_id)
  ) WITHOUT ROWID`,
]

const TEMP_DDL = [
  `CREATE TEMP TABLE IF NOT EXISTS stage_rows (
    ev INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ident BLOB NOT NULL,
    occ INTEGER NOT NULL,
    pfx BLOB,
    vals TEXT NOT NULL,
    PRIMARY KEY (ev, ident, occ)
  ) WITHOUT ROWID`,
  // Diffs walk staged rows in result order, a window at a time (applyDiffSlice).
  'CREATE INDEX IF NOT EXISTS temp.stage_rows_seq ON stage_rows (ev, seq)',
  `CREATE TEMP TABLE IF NOT EXISTS stage_scope (
    ev INTEGER NOT NULL,
    rid INTEGER NOT NULL,
    PRIMARY KEY (ev, rid)
  ) WITHOUT ROWID`,
]

export interface StoredSubscription {
  readonly num: number
  readonly id: string
  /** The SQL as the first subscriber sent it. */
  readonly sqlText: string
  /** The SQL with parameters renamed (params.ts), and their values. */
  readonly boundSql: string
  readonly params: Record<string, SqlValue>
  /** How rows are named (planner.ts planSignature). */
  readonly signature: string
  readonly columns: readonly string[]
  readonly createdMs: number
  readonly lastChange: number
  /** The oldest change id kept (lastChange + 1 when none is). */
  readonly firstChange: number
}

export type NewSubscription = Omit<StoredSubscription, 'num' | 'lastChange' | 'firstChange'>

export interface StagedRow {
  readonly ident: Buffer
  readonly vals: string
  readonly prefix: Buffer | null
}

/**
 * How staged rows with the same identity are treated: `unique` (a full run of an incremental
 * query, where a repeat would mean the identity is wrong: it throws), `merge` (restricted
 * runs, whose UNION ALL branches may return the same row twice) or `count` (full mode, where
 * equal rows are distinct occurrences).
 */
export type StageMode = 'unique' | 'merge' | 'count'

/** Which stored rows an evaluation recomputed: all, or those reached by keys and prefixes. */
export type Scope =
  | { readonly kind: 'all' }
  | {
      readonly kind: 'keys'
      readonly itemKeys: readonly { readonly item: number; readonly key: Buffer }[]
      readonly prefixes: readonly Buffer[]
    }

export interface DiffOptions {
  readonly num: number
  readonly ev: number
  readonly scope: Scope
  /** FROM items of an incremental subscription (their keys are indexed); 0 in full mode. */
  readonly itemCount: number
  /** Log change events (false for a new subscription's first result: it is sent as rows). */
  readonly log: boolean
  readonly historyMax: number
}

export interface DiffResult {
  /** The logged change events, in change id order, as NDJSON lines. */
  readonly changes: readonly { readonly id: number; readonly line: string }[]
  readonly lastChange: number
  readonly firstChange: number
  /** Rows of the stored result after the diff changed (inserted + deleted). */
  readonly rowsDelta: number
}

/**
 * Where a diff applied in slices is (`SubsStore.beginDiff`): the part being walked and the key
 * (rowid or staged seq) after which its next window starts. Owned by one evaluation.
 */
export interface DiffProgress {
  readonly o: DiffOptions
  phase: 'scope' | 'deletes' | 'updates' | 'inserts' | 'clear' | 'done'
  after: number
}

export class DuplicateIdentityError extends Error {
  override readonly name = 'DuplicateIdentityError'
}

/** A consistent read of one subscription's stored result, with the change id it is at. */
export interface Snapshot {
  readonly changeId: number
  /** Up to `max` row lines (fewer only at the end). */
  next(max: number, maxBytes: number): string[]
  close(): void
}

interface SubRow {
  sub: number
  id: string
  sql_text: string
  bound_sql: string
  params: string
  signature: string
  columns: string
  created_ms: number
  last_change: number
  first_change: number | null
}

export class SubsStore {
  readonly file: string
  private readonly db: Database.Database
  private nextEv = 1
  private readonly gcQueue = new Set<number>()
  private readonly s: ReturnType<typeof prepareStatements>

  private constructor(file: string, synchronous: Synchronous) {
    this.file = file
    this.db = openDb(file, { synchronous, cacheSizeKib: SUBS_DB_CACHE_SIZE_KIB })
    this.db.defaultSafeIntegers(false)
    // Staged rows live on this connection only and need no durability.
    this.db.pragma('temp_store = FILE')
    const version = this.db.pragma('user_version', { simple: true }) as number
    if (version > SCHEMA_VERSION) {
      throw new Error(`${file} was written by a newer Patina (schema ${version})`)
    }
    this.db.transaction(() => {
      for (const sql of DDL) this.db.exec(sql)
      // Written only when it changes: an open on a full disk must not need to write.
      if (version !== SCHEMA_VERSION) this.db.pragma(`user_version = ${SCHEMA_VERSION}`)
    })()
    for (const sql of TEMP_DDL) this.db.exec(sql)
    this.s = prepareStatements(this.db)
    // Leftovers of subscriptions dropped before a crash or restart.
    const orphans = this.db
      .prepare(
        'SELECT sub FROM (SELECT DISTINCT sub FROM sub_rows UNION SELECT DISTINCT sub FROM sub_changes ' +
          'UNION SELECT DISTINCT sub FROM sub_row_keys) WHERE sub NOT IN (SELECT sub FROM subs)',
      )
      .pluck()
      .all() as number[]
    for (const num of orphans) this.gcQueue.add(num)
  }

  /** Opens (creating it and its directory) the subscriptions database in `dir`. */
  static open(dir: string, synchronous: Synchronous = 'normal'): SubsStore {
    mkdirSync(dir, { recursive: true })
    return new SubsStore(join(dir, SUBS_DB_FILE), synchronous)
  }

  close(): void {
    this.db.close()
  }

  loadAll(): StoredSubscription[] {
    const rows = this.db
      .prepare(
        'SELECT s.*, (SELECT min(change_id) FROM sub_changes c WHERE c.sub = s.sub) AS first_change ' +
          'FROM subs s ORDER BY s.sub',
      )
      .all() as SubRow[]
    return rows.map((r) => ({
      num: r.sub,
      id: r.id,
      sqlText: r.sql_text,
      boundSql: r.bound_sql,
      params: decodeParams(r.params),
      signature: r.signature,
      columns: JSON.parse(r.columns) as string[],
      createdMs: r.created_ms,
      lastChange: r.last_change,
      firstChange: r.first_change ?? r.last_change + 1,
    }))
  }

  create(sub: NewSubscription): number {
    return this.s.insertSub
      .pluck()
      .get(
        sub.id,
        sub.sqlText,
        sub.boundSql,
        encodeParams(sub.params),
        sub.signature,
        JSON.stringify(sub.columns),
        sub.createdMs,
      ) as number
  }

  /** Forgets a subscription at once; its rows are deleted a bounded batch at a time (gcStep). */
  drop(num: number): void {
    this.s.deleteSub.run(num)
    this.gcQueue.add(num)
  }

  /** Deletes up to `limit` leftover rows of dropped subscriptions; true while more remain. */
  gcStep(limit: number): boolean {
    const num = this.gcQueue.values().next().value
    if (num === undefined) return false
    let deleted = 0
    this.db.transaction(() => {
      for (const stmt of [this.s.gcChanges, this.s.gcKeys, this.s.gcRows]) {
        deleted += stmt.run(num, num, limit).changes
      }
    })()
    if (deleted === 0) this.gcQueue.delete(num)
    return this.gcQueue.size > 0
  }

  rowCount(num: number): number {
    return this.s.rowCount.pluck().get(num) as number
  }

  /** A fresh evaluation number for staging. */
  beginEval(): number {
    return this.nextEv++
  }

  /** Stages result rows of evaluation `ev` (one short transaction). */
  stage(ev: number, firstSeq: number, rows: readonly StagedRow[], mode: StageMode): void {
    this.db.transaction(() => {
      let seq = firstSeq
      for (const row of rows) {
        if (mode === 'count') {
          this.s.stageCount.run(ev, seq++, row.ident, ev, row.ident, row.prefix, row.vals)
        } else if (mode === 'merge') {
          this.s.stageMerge.run(ev, seq++, row.ident, row.prefix, row.vals)
        } else {
          try {
            this.s.stageUnique.run(ev, seq++, row.ident, row.prefix, row.vals)
          } catch (err) {
            if ((err as { code?: string }).code?.startsWith('SQLITE_CONSTRAINT') === true) {
              throw new DuplicateIdentityError(
                'two result rows came from the same source rows; the query cannot be keyed',
                { cause: err },
              )
            }
            throw err
          }
        }
      }
    })()
  }

  /** Drops what evaluation `ev` staged. */
  endEval(ev: number): void {
    this.s.clearStage.run(ev)
    this.s.clearScope.run(ev)
  }

  /** Key prefixes of the stored rows in which FROM item `item` has key `key`. */
  prefixesOf(num: number, item: number, key: Buffer): Buffer[] {
    return this.s.prefixesOfKey.pluck().all(num, item, key) as Buffer[]
  }

  /**
   * Starts diffing what evaluation `ev` staged (all of it: staging is over) against the stored
   * result within `scope`. The diff is applied by `applyDiffSlice`, in as many slices as it
   * takes; `applyDiff` does it at once.
   */
  beginDiff(o: DiffOptions): DiffProgress {
    return { o, phase: o.scope.kind === 'all' ? 'deletes' : 'scope', after: -1 }
  }

  /**
   * Applies the next slice of a diff and logs it as change events, in one transaction:
   * deletes (rows in scope no longer returned, in rowid order), updates (same identity, other
   * values, in result order), then inserts (new identities, in result order, each given the
   * next rowid); then what was staged is cleared. Rows are taken SUBS_DIFF_WINDOW_ROWS at a time (a window of stored rows for
   * deletes, of staged rows for the others), and the slice ends after the window during which
   * `more()` turns false, or when the diff is done (`progress.phase === 'done'`).
   *
   * The slices log exactly the events one transaction would, with the same change ids and
   * rowids: the three sets are disjoint by identity, so applying one does not change what the
   * others select, and each is walked in its order. Between slices the stored result is part
   * way, and its log says so: each slice commits its rows, its events and the counters
   * together. After a crash between two slices, the next start re-runs the query in full and
   * logs the rest. A slice after the subscription was dropped does nothing and ends the diff.
   */
  applyDiffSlice(progress: DiffProgress, more: () => boolean): DiffResult {
    const { o } = progress
    return this.db.transaction((): DiffResult => {
      const counters = this.s.counters.get(o.num) as
        { next_rid: number; last_change: number } | undefined
      if (counters === undefined) {
        progress.phase = 'done'
        return { changes: [], lastChange: 0, firstChange: 1, rowsDelta: 0 }
      }
      let nextRid = counters.next_rid
      let last = counters.last_change
      let rowsDelta = 0
      const changes: { id: number; line: string }[] = []
      const log = (kind: ChangeKind, rid: number, vals: string): void => {
        if (!o.log) return
        last++
        this.s.insertChange.run(o.num, last, KIND_CODES[kind], rid, vals)
        changes.push({ id: last, line: changeLine(kind, rid, vals, last) })
      }
      const window = SUBS_DIFF_WINDOW_ROWS
      /** The upper bound of the next window after `progress.after` (null: to the end). */
      const bound = (stmt: Database.Statement, key: number): number | null =>
        (stmt.pluck().get(key, progress.after, window - 1) as number | undefined) ?? null
      const next = (phase: DiffProgress['phase'], hi: number | null): void => {
        if (hi === null) {
          progress.phase = phase
          progress.after = -1
        } else {
          progress.after = hi
        }
      }
      do {
        switch (progress.phase) {
          case 'scope': {
            if (o.scope.kind === 'keys') {
              for (const { item, key } of o.scope.itemKeys) {
                this.s.scopeByKey.run(o.ev, o.num, item, key)
              }
              for (const prefix of o.scope.prefixes) this.s.scopeByPrefix.run(o.ev, o.num, prefix)
            }
            progress.phase = 'deletes'
            break
          }
          case 'deletes': {
            const all = o.scope.kind === 'all'
            const hi = all ? bound(this.s.rowsBound, o.num) : bound(this.s.scopeBound, o.ev)
            const lo = progress.after
            const top = hi ?? Number.MAX_SAFE_INTEGER
            const deletes = (
              all
                ? this.s.deletesAll.all(o.num, lo, top, o.ev)
                : this.s.deletesScoped.all(o.num, o.ev, lo, top)
            ) as { rid: number; ident: Buffer; vals: string }[]
            for (const d of deletes) {
              this.s.deleteRow.run(o.num, d.rid)
              if (o.itemCount > 0) {
                identityKeys(d.ident, o.itemCount).forEach((key, item) => {
                  if (key !== null) this.s.deleteKey.run(o.num, item, key, d.rid)
                })
              }
              log('delete', d.rid, d.vals)
            }
            rowsDelta -= deletes.length
            next('updates', hi)
            break
          }
          case 'updates': {
            const hi = bound(this.s.stageBound, o.ev)
            const updates = this.s.updates.all(
              o.num,
              o.ev,
              progress.after,
              hi ?? Number.MAX_SAFE_INTEGER,
            ) as { rid: number; vals: string }[]
            for (const u of updates) {
              this.s.updateRow.run(u.vals, o.num, u.rid)
              log('update', u.rid, u.vals)
            }
            next('inserts', hi)
            break
          }
          case 'inserts': {
            const hi = bound(this.s.stageBound, o.ev)
            const inserts = this.s.inserts.all(
              o.ev,
              progress.after,
              hi ?? Number.MAX_SAFE_INTEGER,
              o.num,
            ) as { ident: Buffer; occ: number; pfx: Buffer | null; vals: string }[]
            for (const ins of inserts) {
              const rid = nextRid++
              this.s.insertRow.run(o.num, rid, ins.ident, ins.occ, ins.pfx, ins.vals)
              if (o.itemCount > 0) {
                identityKeys(ins.ident, o.itemCount).forEach((key, item) => {
                  if (key !== null) this.s.insertKey.run(o.num, item, key, rid)
                })
              }
              log('insert', rid, ins.vals)
            }
            rowsDelta += inserts.length
            next('clear', hi)
            break
          }
          case 'clear': {
            // What was staged goes too, a window at a time (a large result's rows would
            // take one long DELETE).
            const hi = bound(this.s.stageBound, o.ev)
            this.s.clearStageWindow.run(o.ev, progress.after, hi ?? Number.MAX_SAFE_INTEGER)
            if (hi === null) this.s.clearScope.run(o.ev)
            next('done', hi)
            break
          }
          case 'done':
            break
        }
      } while (progress.phase !== 'done' && more())
      this.s.setCounters.run(nextRid, last, o.num)
      const keepFrom = last - o.historyMax + 1
      if (changes.length > 0 && keepFrom > 1) this.s.trimChanges.run(o.num, keepFrom - 1)
      return { changes, lastChange: last, firstChange: Math.max(1, keepFrom), rowsDelta }
    })()
  }

  /** The whole diff of evaluation `ev` in one transaction (see `applyDiffSlice`). */
  applyDiff(o: DiffOptions): DiffResult {
    return this.db.transaction((): DiffResult => {
      const progress = this.beginDiff(o)
      const diff = this.applyDiffSlice(progress, () => true)
      if (progress.phase !== 'done') throw new Error('a whole diff ended before its end')
      return diff
    })()
  }

  /** Up to `limit` change events after change id `after`, as NDJSON lines. */
  changesAfter(num: number, after: number, limit: number): { id: number; line: string }[] {
    const rows = this.s.changesAfter.raw().all(num, after, limit) as [
      number,
      number,
      number,
      string,
    ][]
    return rows.map(([id, kind, rid, vals]) => ({
      id,
      line: changeLine(KIND_NAMES[kind] ?? 'update', rid, vals, id),
    }))
  }

  /**
   * Opens a read transaction on a connection of its own, so that a listener can stream a large
   * result page by page while evaluations keep committing. Null when the subscription is gone.
   */
  snapshot(num: number): Snapshot | null {
    const db = new Database(this.file, { readonly: true })
    try {
      db.pragma(`busy_timeout = ${String(BUSY_TIMEOUT_MS)}`)
      db.prepare('BEGIN').run()
      const changeId = db.prepare('SELECT last_change FROM subs WHERE sub = ?').pluck().get(num) as
        number | undefined
      if (changeId === undefined) {
        db.close()
        return null
      }
      const rows = db
        .prepare('SELECT rid, vals FROM sub_rows WHERE sub = ? ORDER BY rid')
        .raw()
        .iterate(num) as IterableIterator<[number, string]>
      let open = true
      const close = (): void => {
        if (!open) return
        open = false
        rows.return?.()
        db.close()
      }
      return {
        changeId,
        next(max: number, maxBytes: number): string[] {
          const lines: string[] = []
          let bytes = 0
          while (open && lines.length < max && bytes < maxBytes) {
            const r = rows.next()
            if (r.done === true) {
              close()
              break
            }
            const line = rowLine(r.value[0], r.value[1])
            bytes += line.length
            lines.push(line)
          }
          return lines
        },
        close,
      }
    } catch (err) {
      db.close()
      throw err
    }
  }
}

/** Every statement the store runs, prepared once. */
function prepareStatements(db: Database.Database) {
  const p = (sql: string): Database.Statement => db.prepare(sql)
  return {
    insertSub: p(
      'INSERT INTO subs (id, sql_text, bound_sql, params, signature, columns, created_ms) ' +
        'VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING sub',
    ),
    deleteSub: p('DELETE FROM subs WHERE sub = ?'),
    counters: p('SELECT next_rid, last_change FROM subs WHERE sub = ?'),
    setCounters: p('UPDATE subs SET next_rid = ?, last_change = ? WHERE sub = ?'),
    stageUnique: p(
      'INSERT INTO stage_rows (ev, seq, ident, occ, pfx, vals) VALUES (?, ?, ?, 0, ?, ?)',
    ),
    stageMerge: p(
      'INSERT OR IGNORE INTO stage_rows (ev, seq, ident, occ, pfx, vals) VALUES (?, ?, ?, 0, ?, ?)',
    ),
    stageCount: p(
      'INSERT INTO stage_rows (ev, seq, ident, occ, pfx, vals) VALUES (?, ?, ?, ' +
        '(SELECT count(*) FROM stage_rows WHERE ev = ? AND ident = ?), ?, ?)',
    ),
    scopeByKey: p(
      'INSERT OR IGNORE INTO stage_scope (ev, rid) ' +
        'SELECT ?, rid FROM sub_row_keys WHERE sub = ? AND item = ? AND pk = ?',
    ),
    scopeByPrefix: p(
      'INSERT OR IGNORE INTO stage_scope (ev, rid) SELECT ?, rid FROM sub_rows WHERE sub = ? AND pfx = ?',
    ),
    // Window bounds (applyDiffSlice): the key SUBS_DIFF_WINDOW_ROWS rows after a cursor, read
    // from an index alone, so that a window costs as many rows whatever it finds in them.
    rowsBound: p(
      'SELECT rid FROM sub_rows WHERE sub = ? AND rid > ? ORDER BY rid LIMIT 1 OFFSET ?',
    ),
    scopeBound: p(
      'SELECT rid FROM stage_scope WHERE ev = ? AND rid > ? ORDER BY rid LIMIT 1 OFFSET ?',
    ),
    stageBound: p(
      'SELECT seq FROM stage_rows WHERE ev = ? AND seq > ? ORDER BY seq LIMIT 1 OFFSET ?',
    ),
    deletesAll: p(
      'SELECT r.rid, r.ident, r.vals FROM sub_rows r WHERE r.sub = ? AND r.rid > ? AND r.rid <= ? ' +
        'AND NOT EXISTS (SELECT 1 FROM stage_rows st WHERE st.ev = ? AND st.ident = r.ident ' +
        'AND st.occ = r.occ) ORDER BY r.rid',
    ),
    // CROSS JOIN fixes the join order (SQLite's hint): the few scoped or staged rows drive,
    // each looked up in sub_rows. Left to the planner (no statistics on the TEMP tables), it
    // scanned every stored row of the subscription, so one changed key cost O(result size).
    deletesScoped: p(
      'SELECT r.rid, r.ident, r.vals FROM stage_scope sc CROSS JOIN sub_rows r ON r.sub = ? AND r.rid = sc.rid ' +
        'WHERE sc.ev = ? AND sc.rid > ? AND sc.rid <= ? AND NOT EXISTS (SELECT 1 FROM stage_rows st ' +
        'WHERE st.ev = sc.ev AND st.ident = r.ident AND st.occ = r.occ) ORDER BY r.rid',
    ),
    updates: p(
      'SELECT r.rid, st.vals FROM stage_rows st CROSS JOIN sub_rows r ' +
        'ON r.sub = ? AND r.ident = st.ident AND r.occ = st.occ ' +
        'WHERE st.ev = ? AND st.seq > ? AND st.seq <= ? AND r.vals <> st.vals ORDER BY st.seq',
    ),
    inserts: p(
      'SELECT st.ident, st.occ, st.pfx, st.vals FROM stage_rows st ' +
        'WHERE st.ev = ? AND st.seq > ? AND st.seq <= ? AND NOT EXISTS ' +
        '(SELECT 1 FROM sub_rows r WHERE r.sub = ? AND r.ident = st.ident AND r.occ = st.occ) ' +
        'ORDER BY st.seq',
    ),
    insertRow: p(
      'INSERT INTO sub_rows (sub, rid, ident, occ, pfx, vals) VALUES (?, ?, ?, ?, ?, ?)',
    ),
    updateRow: p('UPDATE sub_rows SET vals = ? WHERE sub = ? AND rid = ?'),
    deleteRow: p('DELETE FROM sub_rows WHERE sub = ? AND rid = ?'),
    insertKey: p('INSERT INTO sub_row_keys (sub, item, pk, rid) VALUES (?, ?, ?, ?)'),
    deleteKey: p('DELETE FROM sub_row_keys WHERE sub = ? AND item = ? AND pk = ? AND rid = ?'),
    insertChange: p(
      'INSERT INTO sub_changes (sub, change_id, kind, rid, vals) VALUES (?, ?, ?, ?, ?)',
    ),
    trimChanges: p('DELETE FROM sub_changes WHERE sub = ? AND change_id <= ?'),
    clearStage: p('DELETE FROM stage_rows WHERE ev = ?'),
    clearStageWindow: p('DELETE FROM stage_rows WHERE ev = ? AND seq > ? AND seq <= ?'),
    clearScope: p('DELETE FROM stage_scope WHERE ev = ?'),
    changesAfter: p(
      'SELECT change_id, kind, rid, vals FROM sub_changes WHERE sub = ? AND change_id > ? ' +
        'ORDER BY change_id LIMIT ?',
    ),
    prefixesOfKey: p(
      'SELECT DISTINCT r.pfx FROM sub_row_keys k JOIN sub_rows r ON r.sub = k.sub AND r.rid = k.rid ' +
        'WHERE k.sub = ? AND k.item = ? AND k.pk = ? AND r.pfx IS NOT NULL',
    ),
    rowCount: p('SELECT count(*) FROM sub_rows WHERE sub = ?'),
    gcRows: p(
      'DELETE FROM sub_rows WHERE sub = ? AND rid IN (SELECT rid FROM sub_rows WHERE sub = ? LIMIT ?)',
    ),
    gcKeys: p(
      'DELETE FROM sub_row_keys WHERE sub = ? AND (item, pk, rid) IN ' +
        '(SELECT item, pk, rid FROM sub_row_keys WHERE sub = ? LIMIT ?)',
    ),
    gcChanges: p(
      'DELETE FROM sub_changes WHERE sub = ? AND change_id IN ' +
        '(SELECT change_id FROM sub_changes WHERE sub = ? LIMIT ?)',
    ),
  }
}
