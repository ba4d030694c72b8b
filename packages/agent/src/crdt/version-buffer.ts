/**
 * Versions a replica has received but cannot apply yet, kept in SQLite so they survive a
 * restart:
 * - partial: some chunks of a large version arrived, not all. A version is applied only when
 *   its chunks cover every seq from 0 to its last seq, all at once, so readers never see half
 *   of a transaction;
 * - parked: complete, but it names a table or column this replica does not have yet (the
 *   schema reached other hosts first), or breaks a constraint. It is retried after every
 *   schema change, never dropped, and never blocks other versions.
 * Neither kind is held (booked in head/gaps) until it is applied. The rows live in
 * `__patina_buffer`, one per cell; the bookkeeping in `__patina_partials`, one per version.
 * Written inside the caller's transaction, like everything else of the replica.
 */
import type Database from 'better-sqlite3'
import type { Change } from './changes.ts'
import type { VersionRange } from './version-ranges.ts'
import type { SqlValue } from './values.ts'

export const VERSION_BUFFER_DDL = [
  `CREATE TABLE IF NOT EXISTS __patina_partials (site INTEGER NOT NULL, version INTEGER NOT NULL, ` +
    `last_seq INTEGER NOT NULL, seqs TEXT NOT NULL, parked INTEGER NOT NULL, reason TEXT, ` +
    `cells INTEGER NOT NULL, PRIMARY KEY (site, version)) WITHOUT ROWID`,
  `CREATE TABLE IF NOT EXISTS __patina_buffer (site INTEGER NOT NULL, version INTEGER NOT NULL, ` +
    `seq INTEGER NOT NULL, tbl TEXT NOT NULL, pk BLOB NOT NULL, cid TEXT NOT NULL, val, ` +
    `col_version INTEGER NOT NULL, cl INTEGER NOT NULL, PRIMARY KEY (site, version, seq)) ` +
    `WITHOUT ROWID`,
]

export interface BufferedVersion {
  readonly site: number
  readonly version: number
  /** The smallest last seq any sender claimed (cells past it were overwritten there). */
  lastSeq: number
  /** Seq ranges received, sorted and merged. */
  seqs: VersionRange[]
  /** Complete but waiting for a schema change; `reason` says which table or column. */
  parked: boolean
  reason: string | null
  /** Cells stored for this version. */
  cells: number
}

const key = (site: number, version: number): string => `${site}:${version}`

/** Adds `[start, end]` to sorted, merged ranges. */
export function addRange(
  ranges: readonly VersionRange[],
  [start, end]: VersionRange,
): VersionRange[] {
  const out: VersionRange[] = []
  let s = start
  let e = end
  for (const [rs, re] of ranges) {
    if (re < s - 1 || rs > e + 1) out.push([rs, re])
    else {
      s = Math.min(s, rs)
      e = Math.max(e, re)
    }
  }
  out.push([s, e])
  return out.sort((a, b) => a[0] - b[0])
}

/** True when `ranges` contain every number of `[start, end]`. */
export function coversRange(ranges: readonly VersionRange[], [start, end]: VersionRange): boolean {
  return ranges.some(([rs, re]) => rs <= start && re >= end)
}

export class VersionBuffer {
  private readonly db: Database.Database
  private readonly entries = new Map<string, BufferedVersion>()
  private totalCells = 0
  private readonly stmts: {
    readonly upsert: Database.Statement
    readonly insertCell: Database.Statement
    readonly cells: Database.Statement
    readonly deleteCells: Database.Statement
    readonly deleteEntry: Database.Statement
  }

  constructor(db: Database.Database) {
    this.db = db
    for (const sql of VERSION_BUFFER_DDL) db.exec(sql)
    // Databases written before "parked" was named so call the column `held`.
    const columns = db.pragma('table_info(__patina_partials)') as { name: string }[]
    if (columns.some((c) => c.name === 'held')) {
      db.exec('ALTER TABLE __patina_partials RENAME COLUMN held TO parked')
    }
    this.stmts = {
      upsert: db.prepare(
        'INSERT INTO __patina_partials (site, version, last_seq, seqs, parked, reason, cells) ' +
          'VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site, version) DO UPDATE SET ' +
          'last_seq = excluded.last_seq, seqs = excluded.seqs, parked = excluded.parked, ' +
          'reason = excluded.reason, cells = excluded.cells',
      ),
      insertCell: db.prepare(
        'INSERT OR IGNORE INTO __patina_buffer (site, version, seq, tbl, pk, cid, val, ' +
          'col_version, cl) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      cells: db
        .prepare(
          'SELECT seq, tbl, pk, cid, val, col_version, cl FROM __patina_buffer ' +
            'WHERE site = ? AND version = ? ORDER BY seq',
        )
        .raw(),
      deleteCells: db.prepare('DELETE FROM __patina_buffer WHERE site = ? AND version = ?'),
      deleteEntry: db.prepare('DELETE FROM __patina_partials WHERE site = ? AND version = ?'),
    }
    this.load()
  }

  /** Re-reads the bookkeeping from the database (after a rolled-back transaction). */
  load(): void {
    this.entries.clear()
    this.totalCells = 0
    const rows = this.db
      .prepare('SELECT site, version, last_seq, seqs, parked, reason, cells FROM __patina_partials')
      .raw()
      .all() as [bigint, bigint, bigint, string, bigint, string | null, bigint][]
    for (const [site, version, lastSeq, seqs, parked, reason, cells] of rows) {
      const entry: BufferedVersion = {
        site: Number(site),
        version: Number(version),
        lastSeq: Number(lastSeq),
        seqs: JSON.parse(seqs) as VersionRange[],
        parked: parked === 1n,
        reason,
        cells: Number(cells),
      }
      this.entries.set(key(entry.site, entry.version), entry)
      this.totalCells += entry.cells
    }
  }

  get(site: number, version: number): BufferedVersion | undefined {
    return this.entries.get(key(site, version))
  }

  /** Every buffered version (partial and parked). */
  all(): BufferedVersion[] {
    return [...this.entries.values()]
  }

  /** Cells stored over all buffered versions. */
  cellCount(): number {
    return this.totalCells
  }

  /** True when the version's chunks cover seqs 0..lastSeq. */
  static complete(entry: BufferedVersion): boolean {
    return coversRange(entry.seqs, [0, entry.lastSeq])
  }

  /** Stores the cells of one chunk and records its seq range. Returns the updated entry. */
  add(
    site: number,
    version: number,
    seqs: VersionRange,
    lastSeq: number,
    changes: readonly Change[],
  ): BufferedVersion {
    let entry = this.get(site, version)
    if (entry === undefined) {
      entry = { site, version, lastSeq, seqs: [], parked: false, reason: null, cells: 0 }
      this.entries.set(key(site, version), entry)
    }
    entry.lastSeq = Math.min(entry.lastSeq, lastSeq)
    entry.seqs = addRange(entry.seqs, seqs)
    for (const c of changes) {
      const inserted = this.stmts.insertCell.run(
        site,
        version,
        c.seq,
        c.table,
        Buffer.from(c.pk),
        c.cid,
        bindable(c.val),
        c.colVersion,
        c.cl,
      ).changes
      entry.cells += inserted
      this.totalCells += inserted
    }
    this.persist(entry)
    return entry
  }

  hold(entry: BufferedVersion, reason: string): void {
    entry.parked = true
    entry.reason = reason
    this.persist(entry)
  }

  /** The stored cells of a version, by seq, as changes of `origin`. */
  cells(entry: BufferedVersion, origin: Uint8Array): Change[] {
    const rows = this.stmts.cells.all(entry.site, entry.version) as [
      bigint,
      string,
      Buffer,
      string,
      SqlValue,
      bigint,
      bigint,
    ][]
    return rows.map(([seq, table, pk, cid, val, colVersion, cl]) => ({
      table,
      pk: new Uint8Array(pk),
      cid,
      val: val instanceof Buffer ? new Uint8Array(val) : val,
      colVersion: Number(colVersion),
      dbVersion: entry.version,
      actorId: origin,
      cl: Number(cl),
      seq: Number(seq),
    }))
  }

  /** Forgets a version (applied, or superseded by an empty range). */
  delete(entry: BufferedVersion): void {
    this.stmts.deleteCells.run(entry.site, entry.version)
    this.stmts.deleteEntry.run(entry.site, entry.version)
    this.entries.delete(key(entry.site, entry.version))
    this.totalCells -= entry.cells
  }

  private persist(entry: BufferedVersion): void {
    this.stmts.upsert.run(
      entry.site,
      entry.version,
      entry.lastSeq,
      JSON.stringify(entry.seqs),
      entry.parked ? 1 : 0,
      entry.reason,
      entry.cells,
    )
  }
}

function bindable(value: SqlValue): SqlValue | Buffer {
  return value instanceof Uint8Array ? Buffer.from(value) : value
}
