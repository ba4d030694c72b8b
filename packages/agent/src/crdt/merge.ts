/**
 * The merge rule for one row, as a pure function (no SQLite, no I/O).
 *
 * For each incoming cell, in order:
 * 1. Lower causal length than the row's: ignored (an older life of the row).
 * 2. Higher causal length: the row enters that life. Even: it is deleted and every cell clock
 *    is dropped. Odd: it is (re)created; every cell clock is dropped and every value goes back
 *    to its DEFAULT, then the incoming cell (if it is not the sentinel) is applied.
 * 3. Same causal length: the sentinel keeps the larger clock (origin actor id, then version and
 *    seq) so that every replica ends with the same sentinel clock; a cell wins when the local
 *    cell has no clock, or by higher col_version, then larger value (INTEGER > REAL > TEXT >
 *    BLOB > NULL, text and blobs as bytes), then larger origin actor id, then (version, seq).
 * Applying a cell twice, or two cells in either order, gives the same state.
 */
import { compareBytes, compareValues, type SqlValue } from './values.ts'

/** Where a clock came from: origin site (a local ordinal), origin version, seq. */
export interface Stamp {
  readonly site: number
  readonly dbv: number
  readonly seq: number
}

export interface CellClock extends Stamp {
  /** col_version: how many times this cell was written in this life of the row. */
  readonly v: number
}

export interface RowState {
  /** Causal length: odd = the row exists, even = deleted. 0 = never seen. */
  cl: number
  /** The sentinel's clock; null while implicit (a row created by cell writes). */
  sentinel: Stamp | null
  /** Cell clocks, aligned with the table's non-key columns; null = default at version 0. */
  cells: (CellClock | null)[]
}

export interface IncomingCell extends Stamp {
  /** Column index in the table's non-key columns, or -1 for the sentinel. */
  readonly col: number
  readonly val: SqlValue
  readonly colVersion: number
  readonly cl: number
}

/**
 * The core mechanisms, each of which can be switched off so that tests can prove they catch its
 * loss. Production code never switches any off.
 */
export interface Mechanisms {
  /** Lower causal lengths are ignored (no resurrection by an old life). */
  readonly causalLength: boolean
  /** Equal col_versions are decided by value, then by origin site. */
  readonly tieBreak: boolean
}

export const ALL_MECHANISMS: Mechanisms = { causalLength: true, tieBreak: true }

export interface MergeContext {
  /** The 16-byte actor id of a local site ordinal. */
  actorId(ordinal: number): Uint8Array
  /** The current stored value of a column of this row (only asked for ties). */
  storedValue(col: number): SqlValue
}

export interface RowOutcome {
  readonly state: RowState
  /** One flag per incoming cell: did it change the state? */
  readonly won: boolean[]
  /** True when any clock changed. */
  readonly changed: boolean
  /** True when the row entered a new life: rewrite the data row from its defaults. */
  readonly reset: boolean
  /** Final values of the cells that won, by column index. */
  readonly values: Map<number, SqlValue>
}

export function emptyRowState(columnCount: number): RowState {
  return { cl: 0, sentinel: null, cells: new Array<CellClock | null>(columnCount).fill(null) }
}

function compareStamps(a: Stamp, b: Stamp, ctx: MergeContext): number {
  if (a.site !== b.site) {
    const bySite = compareBytes(ctx.actorId(a.site), ctx.actorId(b.site))
    if (bySite !== 0) return bySite
  }
  if (a.dbv !== b.dbv) return a.dbv < b.dbv ? -1 : 1
  if (a.seq !== b.seq) return a.seq < b.seq ? -1 : 1
  return 0
}

export function mergeRow(
  prev: RowState,
  incoming: readonly IncomingCell[],
  ctx: MergeContext,
  mechanisms: Mechanisms = ALL_MECHANISMS,
): RowOutcome {
  const state: RowState = { cl: prev.cl, sentinel: prev.sentinel, cells: [...prev.cells] }
  const values = new Map<number, SqlValue>()
  const won: boolean[] = []
  let reset = false
  let changed = false

  // After a reset every clock that is not null was set by this merge, so its value is here.
  const valueOf = (col: number): SqlValue =>
    values.has(col) ? (values.get(col) as SqlValue) : ctx.storedValue(col)

  const stamp = (c: IncomingCell): Stamp => ({ site: c.site, dbv: c.dbv, seq: c.seq })

  for (const c of incoming) {
    let w = false
    if (c.cl < state.cl && mechanisms.causalLength) {
      w = false
    } else if (c.cl > state.cl) {
      state.cl = c.cl
      state.cells.fill(null)
      values.clear()
      state.sentinel = c.col === -1 ? stamp(c) : null
      if (c.cl % 2 === 1) {
        reset = true
        if (c.col !== -1) {
          state.cells[c.col] = { v: c.colVersion, ...stamp(c) }
          values.set(c.col, c.val)
        }
      }
      w = true
    } else if (c.col === -1) {
      if (
        state.sentinel === null ||
        !mechanisms.tieBreak ||
        compareStamps(stamp(c), state.sentinel, ctx) > 0
      ) {
        state.sentinel = stamp(c)
        w = true
      }
    } else if (c.cl % 2 === 1 || !mechanisms.causalLength) {
      const local = state.cells[c.col] ?? null
      let wins: boolean
      if (local === null) {
        wins = true
      } else if (c.colVersion !== local.v) {
        wins = c.colVersion > local.v
      } else if (!mechanisms.tieBreak) {
        wins = true
      } else {
        const byValue = compareValues(c.val, valueOf(c.col))
        wins = byValue !== 0 ? byValue > 0 : compareStamps(stamp(c), local, ctx) > 0
      }
      if (wins) {
        state.cells[c.col] = { v: c.colVersion, ...stamp(c) }
        values.set(c.col, c.val)
        w = true
      }
    }
    won.push(w)
    changed ||= w
  }
  return { state, won, changed, reset, values }
}
