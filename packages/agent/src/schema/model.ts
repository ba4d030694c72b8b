/**
 * The shape of a replicated schema, as read from `.sql` files or from a live database.
 *
 * Names are compared as SQLite compares identifiers: case-insensitively. The maps are keyed by
 * the lower-cased name; `name` keeps the spelling of the definition.
 */

/** One column of a replicated table. */
export interface ColumnDef {
  readonly name: string
  /** Declared type as written (`''` when none), e.g. `INTEGER`, `TEXT`. */
  readonly type: string
  readonly notNull: boolean
  /** The DEFAULT expression's SQL text, or `null` when the column has no DEFAULT. */
  readonly defaultSql: string | null
  /** 1-based position in the primary key, 0 when the column is not part of it. */
  readonly pkIndex: number
  /**
   * The column definition exactly as it appears inside CREATE TABLE (name, type and column
   * constraints), usable verbatim in `ALTER TABLE t ADD COLUMN <definitionSql>`.
   */
  readonly definitionSql: string
}

/** Where a definition was read in the schema files, for error messages. */
export interface SourceLocation {
  readonly path: string
  /** 1-based line of the statement's first token. */
  readonly line: number
}

export interface TableDef {
  readonly name: string
  /** Columns in declaration order. */
  readonly columns: readonly ColumnDef[]
  /** Primary-key column names in key order. */
  readonly pk: readonly string[]
  /** The CREATE TABLE statement as written in the schema file (or as stored by SQLite). */
  readonly sql: string
  /** Set by parseSchema: the file and line of the CREATE TABLE. Absent for a live database. */
  readonly source?: SourceLocation
}

export interface IndexDef {
  readonly name: string
  readonly table: string
  /** The CREATE INDEX statement, as SQLite stores it in sqlite_schema. */
  readonly sql: string
}

export interface SchemaModel {
  /** Keyed by lower-cased table name. */
  readonly tables: ReadonlyMap<string, TableDef>
  /** Keyed by lower-cased index name. Only explicit indexes (no autoindexes). */
  readonly indexes: ReadonlyMap<string, IndexDef>
}

/** What must change to go from the current schema to the desired one (additions only). */
export interface SchemaPlan {
  readonly newTables: readonly TableDef[]
  readonly newColumns: readonly { readonly table: string; readonly column: ColumnDef }[]
  /** Indexes to drop first (removed from the files, or changed: then also in createIndexes). */
  readonly dropIndexes: readonly IndexDef[]
  readonly createIndexes: readonly IndexDef[]
}

export function isEmptyPlan(plan: SchemaPlan): boolean {
  return (
    plan.newTables.length === 0 &&
    plan.newColumns.length === 0 &&
    plan.dropIndexes.length === 0 &&
    plan.createIndexes.length === 0
  )
}
