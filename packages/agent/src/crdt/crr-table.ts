/**
 * A replicated table ("CRR") as the CRDT layer sees it: key columns with their declared types,
 * and the other columns in table order.
 */
import type Database from 'better-sqlite3'
import { q } from './names.ts'

export interface CrrTable {
  readonly name: string
  readonly pk: readonly { readonly name: string; readonly type: string }[]
  /** Non-key columns in table order. */
  readonly cols: readonly string[]
}

interface TableInfoRow {
  name: string
  type: string
  pk: bigint
  hidden: bigint
}

export function readCrrTable(db: Database.Database, name: string): CrrTable {
  const rows = db.prepare(`PRAGMA table_xinfo(${q(name)})`).all() as TableInfoRow[]
  const pk = rows
    .filter((r) => r.pk > 0n)
    .sort((a, b) => Number(a.pk - b.pk))
    .map((r) => ({ name: r.name, type: r.type }))
  const cols = rows.filter((r) => r.pk === 0n && r.hidden === 0n).map((r) => r.name)
  return { name, pk, cols }
}
