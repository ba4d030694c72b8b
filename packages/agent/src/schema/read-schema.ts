/**
 * Reads the replicated schema of a live database: its user tables and their explicit indexes,
 * as SQLite stores them. SQLite's own objects (`sqlite_*`, autoindexes) and Patina's internal
 * ones (told apart by `isInternal`) are left out.
 */
import type Database from 'better-sqlite3'
import type { IndexDef, SchemaModel, TableDef } from './model.ts'
import { readTableDef } from './read-table.ts'

interface SchemaRow {
  readonly type: 'table' | 'index'
  readonly name: string
  readonly tbl_name: string
  /** null for autoindexes (UNIQUE / PRIMARY KEY constraints). */
  readonly sql: string | null
}

export function readCurrentSchema(
  db: Database.Database,
  isInternal: (name: string) => boolean,
): SchemaModel {
  const rows = db
    .prepare<[], SchemaRow>(
      `SELECT type, name, tbl_name, sql FROM main.sqlite_schema
       WHERE type IN ('table', 'index') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
       ORDER BY rowid`,
    )
    .all()

  const tables = new Map<string, TableDef>()
  for (const row of rows) {
    if (row.type !== 'table' || row.sql === null || isInternal(row.name)) continue
    tables.set(row.name.toLowerCase(), readTableDef(db, row.name, row.sql))
  }

  const indexes = new Map<string, IndexDef>()
  for (const row of rows) {
    if (row.type !== 'index' || row.sql === null || isInternal(row.name)) continue
    // An index on an internal table is internal too, whatever its name.
    if (!tables.has(row.tbl_name.toLowerCase())) continue
    indexes.set(row.name.toLowerCase(), { name: row.name, table: row.tbl_name, sql: row.sql })
  }
  return { tables, indexes }
}
