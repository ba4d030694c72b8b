/**
 * Prepared statements of one replicated table for the merge and read paths: read a row's
 * clocks and values, write merged cells and clocks, and list the cells of one version.
 */
import type Database from 'better-sqlite3'
import { WRITE_CACHE_MAX } from '../config/defaults.ts'
import type { Change } from './changes.ts'
import type { CrrTable } from './crr-table.ts'
import { ReplicaError } from './errors.ts'
import type { CellClock, RowOutcome, RowState, Stamp } from './merge.ts'
import {
  cellDbvCol,
  cellSeqCol,
  cellSiteCol,
  cellVersionCol,
  clockTable,
  q,
  SENTINEL_CID,
  versionIndexTable,
} from './names.ts'
import { packPk, PkCodecError, unpackPk } from './pk-codec.ts'
import type { SqlValue } from './values.ts'

type Num = number | null

function cellNames(col: string): string[] {
  return [cellVersionCol(col), cellSiteCol(col), cellDbvCol(col), cellSeqCol(col)].map(q)
}

export class TableStatements {
  readonly table: CrrTable
  private readonly db: Database.Database
  private readonly columns = new Map<string, number>()
  private readonly pkWhere: string
  private readonly clockCols: string
  private readonly readClock: Database.Statement
  private readonly readData: Database.Statement
  private readonly writeClock: Database.Statement
  private readonly deleteRow: Database.Statement
  private readonly readByVersion: Database.Statement
  private readonly addRefs: Database.Statement
  private readonly subRefs: Database.Statement
  private readonly dropRefs: Database.Statement
  private readonly upserts = new Map<string, Database.Statement>()

  constructor(db: Database.Database, table: CrrTable) {
    this.db = db
    this.table = table
    table.cols.forEach((c, i) => this.columns.set(c.toLowerCase(), i))
    const t = q(table.name)
    const clock = q(clockTable(table.name))
    const pkNames = table.pk.map((p) => q(p.name))
    this.pkWhere = pkNames.map((n) => `${n} = ?`).join(' AND ')
    this.clockCols = ['__cl', '__cs', '__cd', '__cq', ...table.cols.flatMap(cellNames)].join(', ')

    this.readClock = db.prepare(`SELECT ${this.clockCols} FROM ${clock} WHERE ${this.pkWhere}`)
    this.readClock.raw(true).safeIntegers(false)

    const dataCols = table.cols.length === 0 ? '1' : table.cols.map(q).join(', ')
    this.readData = db.prepare(`SELECT ${dataCols} FROM ${t} WHERE ${this.pkWhere}`)
    this.readData.raw(true).safeIntegers(true)

    const allClock = [...pkNames, this.clockCols]
    const placeholders = new Array<string>(pkNames.length + 4 + table.cols.length * 4).fill('?')
    const updates = ['__cl', '__cs', '__cd', '__cq', ...table.cols.flatMap(cellNames)]
      .map((n) => `${n} = excluded.${n}`)
      .join(', ')
    this.writeClock = db.prepare(
      `INSERT INTO ${clock} (${allClock.join(', ')}) VALUES (${placeholders.join(', ')}) ` +
        `ON CONFLICT (${pkNames.join(', ')}) DO UPDATE SET ${updates}`,
    )
    this.deleteRow = db.prepare(`DELETE FROM ${t} WHERE ${this.pkWhere}`)

    const on = (a: string, b: string): string =>
      pkNames.map((n) => `${a}.${n} = ${b}.${n}`).join(' AND ')
    const pkSelect = pkNames.map((n) => `c.${n}`).join(', ')
    const clockSelect = ['__cl', '__cs', '__cd', '__cq', ...table.cols.flatMap(cellNames)]
      .map((n) => `c.${n}`)
      .join(', ')
    const dataSelect = table.cols.map((c) => `, d.${q(c)}`).join('')
    this.readByVersion = db.prepare(
      `SELECT ${pkSelect}, ${clockSelect}${dataSelect} FROM ${q(versionIndexTable(table.name))} x ` +
        `JOIN ${clock} c ON ${on('c', 'x')} LEFT JOIN ${t} d ON ${on('d', 'x')} ` +
        `WHERE x.__site = ? AND x.__dbv = ?`,
    )
    this.readByVersion.raw(true).safeIntegers(true)

    const vidx = q(versionIndexTable(table.name))
    const vidxKey = `__site = ? AND __dbv = ? AND ${this.pkWhere}`
    this.addRefs = db.prepare(
      `INSERT INTO ${vidx} (__site, __dbv, ${pkNames.join(', ')}, __refs) ` +
        `VALUES (?, ?, ${pkNames.map(() => '?').join(', ')}, ?) ` +
        `ON CONFLICT DO UPDATE SET __refs = __refs + excluded.__refs`,
    )
    this.subRefs = db.prepare(`UPDATE ${vidx} SET __refs = __refs - ? WHERE ${vidxKey}`)
    this.dropRefs = db.prepare(`DELETE FROM ${vidx} WHERE ${vidxKey} AND __refs <= 0`)
  }

  /**
   * Moves the version index from the stamps of `prev` to those of `next`: one write per stamp
   * whose count changed (the clock-table triggers do this for local writes only).
   */
  private updateVersionIndex(pk: readonly SqlValue[], prev: RowState | null, next: RowState): void {
    const counts = new Map<string, [number, number, number]>()
    const add = (st: Stamp | null, by: number): void => {
      if (st === null) return
      const k = `${st.site}:${st.dbv}`
      const entry = counts.get(k)
      if (entry === undefined) counts.set(k, [st.site, st.dbv, by])
      else entry[2] += by
    }
    if (prev !== null) {
      add(prev.sentinel, -1)
      for (const c of prev.cells) add(c, -1)
    }
    add(next.sentinel, 1)
    for (const c of next.cells) add(c, 1)
    for (const [site, dbv, delta] of counts.values()) {
      if (delta > 0) {
        this.addRefs.run(site, dbv, ...pk, delta)
      } else if (delta < 0) {
        this.subRefs.run(-delta, site, dbv, ...pk)
        this.dropRefs.run(site, dbv, ...pk)
      }
    }
  }

  columnIndex(name: string): number | undefined {
    return this.columns.get(name.toLowerCase())
  }

  /** Throws unless `pk` is a well-formed packed key with this table's number of key columns. */
  checkPk(pk: Uint8Array): void {
    let values: SqlValue[]
    try {
      values = unpackPk(pk)
    } catch (cause) {
      const message = cause instanceof PkCodecError ? cause.message : 'invalid primary key'
      throw new ReplicaError('INVALID_CHANGE', `table "${this.table.name}": ${message}`, { cause })
    }
    if (values.length !== this.table.pk.length) {
      throw new ReplicaError(
        'INVALID_CHANGE',
        `table "${this.table.name}": primary key has ${values.length} columns, expected ${this.table.pk.length}`,
      )
    }
  }

  readRowState(pk: readonly SqlValue[]): RowState | null {
    const row = this.readClock.get(...pk) as Num[] | undefined
    if (row === undefined) return null
    const stamp = (site: Num, dbv: Num, seq: Num): Stamp | null =>
      dbv === null ? null : { site: site ?? 0, dbv, seq: seq ?? 0 }
    const cells: (CellClock | null)[] = []
    for (let i = 0; i < this.table.cols.length; i++) {
      const o = 4 + i * 4
      const v = row[o] ?? null
      const s = stamp(row[o + 1] ?? null, row[o + 2] ?? null, row[o + 3] ?? null)
      cells.push(v === null || s === null ? null : { v, ...s })
    }
    return {
      cl: row[0] ?? 0,
      sentinel: stamp(row[1] ?? null, row[2] ?? null, row[3] ?? null),
      cells,
    }
  }

  readValues(pk: readonly SqlValue[]): SqlValue[] {
    const row = this.readData.get(...pk) as SqlValue[] | undefined
    return row ?? new Array<SqlValue>(this.table.cols.length).fill(null)
  }

  private upsertFor(cols: readonly number[], replace: boolean): Database.Statement {
    const key = `${replace ? 'r' : 'u'}${cols.join(',')}`
    let stmt = this.upserts.get(key)
    if (stmt === undefined) {
      const names = [
        ...this.table.pk.map((p) => q(p.name)),
        ...cols.map((i) => q(this.table.cols[i] as string)),
      ]
      const values = names.map(() => '?').join(', ')
      const head = `INSERT ${replace ? 'OR REPLACE ' : ''}INTO ${q(this.table.name)} (${names.join(', ')}) VALUES (${values})`
      let sql = head
      if (!replace) {
        const sets = cols.map(
          (i) => `${q(this.table.cols[i] as string)} = excluded.${q(this.table.cols[i] as string)}`,
        )
        const pkNames = this.table.pk.map((p) => q(p.name)).join(', ')
        sql =
          sets.length === 0
            ? `INSERT OR IGNORE INTO ${q(this.table.name)} (${names.join(', ')}) VALUES (${values})`
            : `${head} ON CONFLICT (${pkNames}) DO UPDATE SET ${sets.join(', ')}`
      }
      stmt = this.db.prepare(sql)
      if (this.upserts.size >= WRITE_CACHE_MAX) this.upserts.clear()
      this.upserts.set(key, stmt)
    }
    return stmt
  }

  /** Writes the outcome of a merge: the data row, then its clocks. Capture must be off. */
  writeMerged(pk: readonly SqlValue[], prev: RowState | null, outcome: RowOutcome): void {
    const wasLive = prev !== null && prev.cl % 2 === 1
    const live = outcome.state.cl % 2 === 1
    if (!live) {
      if (wasLive) this.deleteRow.run(...pk)
    } else {
      const cols = [...outcome.values.keys()].sort((a, b) => a - b)
      const replace = outcome.reset && wasLive
      if (outcome.reset || !wasLive || cols.length > 0) {
        const args: SqlValue[] = [...pk]
        for (const c of cols) args.push(outcome.values.get(c) ?? null)
        this.upsertFor(cols, replace).run(...args)
      }
    }
    const s = outcome.state
    const args: (SqlValue | number)[] = [...pk, s.cl]
    args.push(s.sentinel?.site ?? null, s.sentinel?.dbv ?? null, s.sentinel?.seq ?? null)
    for (const c of s.cells) {
      if (c === null) args.push(null, null, null, null)
      else args.push(c.v, c.site, c.dbv, c.seq)
    }
    this.writeClock.run(...args)
    this.updateVersionIndex(pk, prev, s)
  }

  /** Appends to `out` the cells (and sentinel) still stamped with (site, version). */
  readVersion(site: number, version: number, actorId: Uint8Array, out: Change[]): void {
    const nPk = this.table.pk.length
    for (const row of this.readByVersion.iterate(site, version) as Iterable<SqlValue[]>) {
      const pkValues = row.slice(0, nPk)
      const pk = packPk(pkValues)
      const meta = (i: number): number | null => {
        const v = row[nPk + i]
        return v === null || v === undefined ? null : Number(v)
      }
      const cl = meta(0) as number
      if (meta(1) === site && meta(2) === version) {
        out.push({
          table: this.table.name,
          pk,
          cid: SENTINEL_CID,
          val: null,
          colVersion: cl,
          dbVersion: version,
          actorId,
          cl,
          seq: meta(3) ?? 0,
        })
      }
      const dataAt = nPk + 4 + this.table.cols.length * 4
      this.table.cols.forEach((col, i) => {
        const o = 4 + i * 4
        if (meta(o + 1) === site && meta(o + 2) === version) {
          out.push({
            table: this.table.name,
            pk,
            cid: col,
            val: row[dataAt + i] ?? null,
            colVersion: meta(o) ?? 0,
            dbVersion: version,
            actorId,
            cl,
            seq: meta(o + 3) ?? 0,
          })
        }
      })
    }
  }
}
