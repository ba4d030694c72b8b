/**
 * Builds a TableDef from a table that exists in a SQLite database. Shared by parseSchema (which
 * runs the schema files in a scratch database) and readCurrentSchema (a live database), so both
 * sides of a diff are read by the same code.
 */
import type Database from 'better-sqlite3'
import type { ColumnDef, SourceLocation, TableDef } from './model.ts'
import { quoteName } from './schema-error.ts'
import { splitCreateTable } from './table-sql.ts'

/** A row of `PRAGMA table_xinfo`. */
export interface ColumnInfoRow {
  readonly cid: number
  readonly name: string
  readonly type: string
  readonly notnull: number
  readonly dflt_value: string | null
  /** 1-based position in the primary key, 0 when not part of it. */
  readonly pk: number
  /** 0 normal, 1 hidden (virtual tables), 2 virtual generated, 3 stored generated. */
  readonly hidden: number
}

/** A row of `PRAGMA index_list`. */
export interface IndexListRow {
  readonly seq: number
  readonly name: string
  readonly unique: number
  /** 'c' CREATE INDEX, 'u' UNIQUE constraint, 'pk' PRIMARY KEY. */
  readonly origin: string
  readonly partial: number
}

/** A row of `PRAGMA index_info`. */
export interface IndexInfoRow {
  readonly seqno: number
  readonly cid: number
  /** null for an expression. */
  readonly name: string | null
}

/** A row of `PRAGMA foreign_key_list`. */
export interface ForeignKeyRow {
  readonly id: number
  readonly seq: number
  readonly table: string
  readonly from: string
  readonly to: string | null
}

// The table-valued pragma functions take the table name as a bound parameter, so no quoting of
// user names is needed; 'main' keeps a TEMP table of the same name from shadowing it. The rows
// are read with safeIntegers off: the flags and positions are small numbers, whatever the
// connection's default (the replica's writer reads integers as bigint).
export function readColumnInfo(db: Database.Database, table: string): ColumnInfoRow[] {
  return db
    .prepare<[string], ColumnInfoRow>("SELECT * FROM pragma_table_xinfo(?, 'main') ORDER BY cid")
    .safeIntegers(false)
    .all(table)
}

export function readIndexList(db: Database.Database, table: string): IndexListRow[] {
  return db
    .prepare<[string], IndexListRow>("SELECT * FROM pragma_index_list(?, 'main') ORDER BY seq")
    .safeIntegers(false)
    .all(table)
}

export function readIndexInfo(db: Database.Database, index: string): IndexInfoRow[] {
  return db
    .prepare<[string], IndexInfoRow>("SELECT * FROM pragma_index_info(?, 'main') ORDER BY seqno")
    .safeIntegers(false)
    .all(index)
}

export function readForeignKeys(db: Database.Database, table: string): ForeignKeyRow[] {
  return db
    .prepare<[string], ForeignKeyRow>(
      "SELECT * FROM pragma_foreign_key_list(?, 'main') ORDER BY id, seq",
    )
    .safeIntegers(false)
    .all(table)
}

/**
 * Reads the table `name`, whose CREATE TABLE text is `sql`. Column definitions are sliced from
 * `sql`; a column the slicer cannot find (only possible for exotic tables such as virtual ones)
 * falls back to `"name" type`.
 */
export function readTableDef(
  db: Database.Database,
  name: string,
  sql: string,
  source?: SourceLocation,
): TableDef {
  const definitions = new Map<string, string>()
  for (const column of splitCreateTable(sql)?.columns ?? []) {
    definitions.set(column.name.toLowerCase(), column.sql)
  }

  const columns: ColumnDef[] = readColumnInfo(db, name).map((row) => ({
    name: row.name,
    type: row.type,
    notNull: row.notnull !== 0,
    defaultSql: row.dflt_value,
    pkIndex: row.pk,
    definitionSql:
      definitions.get(row.name.toLowerCase()) ??
      (row.type === '' ? quoteName(row.name) : `${quoteName(row.name)} ${row.type}`),
  }))
  const pk = columns
    .filter((c) => c.pkIndex > 0)
    .sort((a, b) => a.pkIndex - b.pkIndex)
    .map((c) => c.name)

  const table: TableDef = { name, columns, pk, sql }
  return source === undefined ? table : { ...table, source }
}
