/**
 * Refusing TEXT that is not valid UTF-8 in local writes.
 *
 * Why: changesets carry TEXT as JS strings, and a string read from SQLite has every ill-formed
 * UTF-8 sequence replaced by U+FFFD. Peers would store other bytes than the origin (EF BF BD 61
 * for FF 61), and two TEXT keys X'FF' and X'FE' would become one row on them. No JSON API,
 * client or subscription can represent such a value exactly either. So a local write that
 * stores one fails with INVALID_TEXT (store raw bytes as a BLOB), and every replica holds the
 * same bytes. Received changesets cannot carry such TEXT: the wire decoder and the primary-key
 * codec decode UTF-8 with fatal decoders.
 *
 * How, exactly and without slowing the write path:
 *
 * 1. The capture triggers already call `patina_seq()` for every cell they stamp, or
 *    `patina_seqs()` once for all the cells of an inserted row; they pass those calls the values
 *    the write stores when they are TEXT (`storedValueSql`), and the functions hand them to
 *    `holdsReplacement`.
 *    better-sqlite3 gives TEXT to JS as a string decoded by V8, which decodes UTF-8 as WHATWG
 *    specifies: each ill-formed sequence (a stray or missing continuation byte, an overlong
 *    form, a surrogate, a code point above U+10FFFF) becomes U+FFFD, and nothing else becomes
 *    U+FFFD but U+FFFD itself (EF BF BD). A string without U+FFFD was therefore valid UTF-8:
 *    the usual write costs one scan of each TEXT value, and no extra call and no copy of
 *    bytes. (A call of its own in the triggers' WHEN clause cost about 5% of the engine
 *    benchmark's insert rate; handing every TEXT over as a BLOB costs a Buffer per value, more
 *    still.)
 * 2. When a transaction stored a value holding U+FFFD (ill-formed, or a real U+FFFD), it checks
 *    before it commits the bytes themselves (`CAST(v AS BLOB)`, with `isUtf8`, as strict as a
 *    fatal TextDecoder) of exactly what its changeset will carry: the key of every row stamped
 *    with its version and every cell stamped with it (`checkVersionText`), found through the
 *    version index. An ill-formed one throws ReplicaError INVALID_TEXT naming the table and the
 *    column, and the transaction rolls back.
 *
 * A property test (test/crdt/invalid-text.test.ts) checks that writes accept exactly the byte
 * strings a fatal TextDecoder accepts.
 */
import { isUtf8 } from 'node:buffer'
import type Database from 'better-sqlite3'
import type { CrrTable } from './crr-table.ts'
import { ReplicaError } from './errors.ts'
import { cellDbvCol, cellSiteCol, clockTable, q, versionIndexTable } from './names.ts'

const REPLACEMENT_CHARACTER = '\uFFFD'

/** True when one of `values` is a string holding U+FFFD (step 1). */
export function holdsReplacement(values: readonly unknown[]): boolean {
  for (const v of values) {
    if (typeof v === 'string' && v.includes(REPLACEMENT_CHARACTER)) return true
  }
  return false
}

/**
 * The value `expr` as the capture triggers hand it to JS: itself when it is TEXT, its length
 * when it is a BLOB (for the cell-size check, cell-size.ts), else NULL, so that numbers cost
 * nothing to hand over and BLOBs are not copied into Buffers. The tests are comparisons, cheaper
 * than a call of typeof(): SQLite orders NULL < numbers < TEXT < BLOB, '' is the smallest TEXT
 * under every built-in collation and x'' the smallest BLOB, and a column's affinity never turns
 * '' or x'' into a number.
 */
export function storedValueSql(expr: string): string {
  return `CASE WHEN ${expr} >= '' AND ${expr} < x'' THEN ${expr} WHEN ${expr} >= x'' THEN length(${expr}) END`
}

export function invalidTextError(table: string, column: string): ReplicaError {
  return new ReplicaError(
    'INVALID_TEXT',
    `table "${table}", column "${column}": TEXT must be valid UTF-8 (store raw bytes as a BLOB)`,
  )
}

/** The bytes of `expr` when it is TEXT (and `condition` holds), else NULL. */
function textBytesSql(expr: string, condition?: string): string {
  const also = condition === undefined ? '' : ` AND ${condition}`
  return `CASE WHEN typeof(${expr}) = 'text'${also} THEN CAST(${expr} AS BLOB) END`
}

/**
 * Step 2: throws INVALID_TEXT when what version `version` of this replica (site ordinal 0)
 * carries holds TEXT that is not valid UTF-8: the key of a row stamped with it (the key goes
 * with every change, deletes included) or a cell stamped with it. Runs inside the write
 * transaction, only after step 1 saw a U+FFFD, so its cost (one index range scan per table)
 * does not matter.
 */
export function checkVersionText(
  db: Database.Database,
  tables: Iterable<CrrTable>,
  version: number,
): void {
  for (const t of tables) {
    const on = (a: string, b: string): string =>
      t.pk.map((p) => `${a}.${q(p.name)} = ${b}.${q(p.name)}`).join(' AND ')
    const columns = [...t.pk.map((p) => p.name), ...t.cols]
    const bytes = [
      ...t.pk.map((p) => textBytesSql(`v.${q(p.name)}`)),
      ...t.cols.map((c) =>
        textBytesSql(
          `d.${q(c)}`,
          `k.${q(cellSiteCol(c))} = 0 AND k.${q(cellDbvCol(c))} = @version`,
        ),
      ),
    ]
    const rows = db
      .prepare(
        `SELECT ${bytes.join(', ')} FROM ${q(versionIndexTable(t.name))} AS v ` +
          `JOIN ${q(clockTable(t.name))} AS k ON ${on('k', 'v')} ` +
          `LEFT JOIN ${q(t.name)} AS d ON ${on('d', 'v')} ` +
          'WHERE v.__site = 0 AND v.__dbv = @version',
      )
      .raw()
      .iterate({ version }) as IterableIterator<(Uint8Array | null)[]>
    for (const row of rows) {
      const bad = row.findIndex((b) => b !== null && !isUtf8(b))
      // Throwing out of for-of closes the iterator (and so the statement).
      if (bad !== -1) throw invalidTextError(t.name, columns[bad] ?? '?')
    }
  }
}
