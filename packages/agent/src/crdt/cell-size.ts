/**
 * Refusing values over `[perf] max_cell_bytes` in local writes.
 *
 * Why: replication sends a cell whole, in one stream frame of at most FRAME_BYTES_MAX; a
 * version holding a bigger cell could never reach a peer (and was re-sent by anti-entropy on
 * every round, for ever). So a local write that stores a larger value fails with ReplicaError
 * CELL_TOO_LARGE naming the table and column, rolls back and consumes no version.
 *
 * How, without slowing the write path (the same two steps as text-check.ts):
 *
 * 1. The capture triggers hand `patina_seq()` / `patina_seqs()` the values the write stores in
 *    the cells they stamp (`storedValueSql`): TEXT as a string, a BLOB as its length (an
 *    integer: no copy of its bytes), anything else as NULL. `holdsOversized` looks at them: a
 *    BLOB's length is compared as it is; a string only has its UTF-8 size computed when it
 *    could be over the limit (`length * 3 > limit`: a UTF-16 unit is at most 3 UTF-8 bytes).
 * 2. When a transaction stored a value that may be over, it checks before it commits the exact
 *    sizes (`octet_length`) of what its version carries: the key of every row stamped with its
 *    version and every cell stamped with it (`checkVersionCells`), through the version index.
 *    A value that was over and is overwritten later in the same transaction does not count:
 *    what counts is what is stored.
 */
import type Database from 'better-sqlite3'
import type { CrrTable } from './crr-table.ts'
import { ReplicaError } from './errors.ts'
import { cellDbvCol, cellSiteCol, clockTable, q, versionIndexTable } from './names.ts'

/** True when one of `values` (as `storedValueSql` hands them over) may be over `limit` bytes. */
export function holdsOversized(values: readonly unknown[], limit: number): boolean {
  for (const v of values) {
    if (typeof v === 'string') {
      if (v.length * 3 > limit && Buffer.byteLength(v, 'utf8') > limit) return true
    } else if (typeof v === 'number' && v > limit) return true
  }
  return false
}

function bytes(n: number): string {
  return n.toLocaleString('en-US')
}

export function cellTooLargeError(
  table: string,
  column: string,
  size: number,
  limit: number,
): ReplicaError {
  return new ReplicaError(
    'CELL_TOO_LARGE',
    `${table}.${column}: a value of ${bytes(size)} bytes is over [perf] max_cell_bytes (${bytes(limit)})`,
  )
}

/**
 * Step 2: throws CELL_TOO_LARGE when what version `version` of this replica (site ordinal 0)
 * carries holds a value over `limit` bytes: the key of a row stamped with it or a cell stamped
 * with it. Runs inside the write transaction, only after step 1 saw a value that may be over.
 */
export function checkVersionCells(
  db: Database.Database,
  tables: Iterable<CrrTable>,
  version: number,
  limit: number,
): void {
  for (const t of tables) {
    const on = (a: string, b: string): string =>
      t.pk.map((p) => `${a}.${q(p.name)} = ${b}.${q(p.name)}`).join(' AND ')
    const columns = [...t.pk.map((p) => p.name), ...t.cols]
    const sizes = [
      ...t.pk.map((p) => `octet_length(v.${q(p.name)})`),
      ...t.cols.map(
        (c) =>
          `CASE WHEN k.${q(cellSiteCol(c))} = 0 AND k.${q(cellDbvCol(c))} = @version ` +
          `THEN octet_length(d.${q(c)}) END`,
      ),
    ]
    const rows = db
      .prepare(
        `SELECT ${sizes.join(', ')} FROM ${q(versionIndexTable(t.name))} AS v ` +
          `JOIN ${q(clockTable(t.name))} AS k ON ${on('k', 'v')} ` +
          `LEFT JOIN ${q(t.name)} AS d ON ${on('d', 'v')} ` +
          'WHERE v.__site = 0 AND v.__dbv = @version',
      )
      .raw()
      .safeIntegers(false)
      .iterate({ version }) as IterableIterator<(number | null)[]>
    for (const row of rows) {
      const over = row.findIndex((n) => n !== null && n > limit)
      // Throwing out of for-of closes the iterator (and so the statement).
      if (over !== -1) {
        throw cellTooLargeError(t.name, columns[over] ?? '?', row[over] as number, limit)
      }
    }
  }
}
