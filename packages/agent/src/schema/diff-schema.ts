/**
 * The additive difference between the schema of a live database and the schema files.
 *
 * Only changes that keep every existing row and cell valid on every host are planned: new
 * tables, new columns that ALTER TABLE ADD COLUMN can add without touching rows, and index
 * changes. Anything else (dropping or changing a table, a column or the primary key) would need
 * the whole cluster to agree and is refused with SCHEMA_DESTRUCTIVE_CHANGE.
 */
import type { ColumnDef, IndexDef, SchemaModel, SchemaPlan, TableDef } from './model.ts'
import { normalizeSql } from './normalize-sql.ts'
import { formatLocation, quoteName, SchemaError } from './schema-error.ts'
import { isKeyword, isPunct, tokenize } from './sql-tokens.ts'
import { splitCreateTable } from './table-sql.ts'

/** Defaults SQLite refuses in ADD COLUMN on a table with rows: each row would need its own. */
const NON_CONSTANT_DEFAULTS = new Set(['CURRENT_TIME', 'CURRENT_DATE', 'CURRENT_TIMESTAMP'])

export function diffSchema(current: SchemaModel, desired: SchemaModel): SchemaPlan {
  for (const [key, table] of current.tables) {
    if (!desired.tables.has(key)) {
      throw new SchemaError(
        'SCHEMA_DESTRUCTIVE_CHANGE',
        `table ${quoteName(table.name)} is in the database but not in the schema files; ` +
          `dropping a table is refused (put its CREATE TABLE back in the files)`,
      )
    }
  }

  const newTables: TableDef[] = []
  const newColumns: { table: string; column: ColumnDef }[] = []
  for (const [key, want] of desired.tables) {
    const have = current.tables.get(key)
    if (have === undefined) {
      newTables.push(want)
      continue
    }
    for (const column of diffTable(have, want)) newColumns.push({ table: want.name, column })
  }

  const sameIndex = (a: IndexDef, b: IndexDef): boolean =>
    normalizeSql(a.sql) === normalizeSql(b.sql)
  const dropIndexes: IndexDef[] = []
  for (const [key, have] of current.indexes) {
    const want = desired.indexes.get(key)
    if (want === undefined || !sameIndex(have, want)) dropIndexes.push(have)
  }
  const createIndexes: IndexDef[] = []
  for (const [key, want] of desired.indexes) {
    const have = current.indexes.get(key)
    if (have === undefined || !sameIndex(have, want)) createIndexes.push(want)
  }

  return { newTables, newColumns, dropIndexes, createIndexes }
}

/** Checks that `want` only adds to `have`; returns the columns to add, in `want`'s order. */
function diffTable(have: TableDef, want: TableDef): ColumnDef[] {
  const where = `${formatLocation(want.source)}table ${quoteName(want.name)}`
  const wanted = new Map(want.columns.map((c) => [c.name.toLowerCase(), c]))
  const existing = new Set(have.columns.map((c) => c.name.toLowerCase()))

  for (const column of have.columns) {
    const next = wanted.get(column.name.toLowerCase())
    if (next === undefined) {
      throw destructive(
        `${where}: column ${quoteName(column.name)} is in the database but not in the schema ` +
          `files; dropping a column is refused (put it back)`,
      )
    }
    compareColumnFields(where, column, next)
  }

  const haveKey = have.pk.map((n) => n.toLowerCase()).join(', ')
  const wantKey = want.pk.map((n) => n.toLowerCase()).join(', ')
  if (haveKey !== wantKey) {
    throw destructive(
      `${where}: the primary key changes from (${haveKey}) to (${wantKey}); changing the ` +
        `primary key is refused`,
    )
  }

  for (const column of have.columns) {
    const next = wanted.get(column.name.toLowerCase())
    if (next !== undefined) compareColumnDefinition(where, column, next)
  }
  compareTableClauses(where, have, want)

  const added = want.columns.filter((c) => !existing.has(c.name.toLowerCase()))
  for (const column of added) checkAddable(where, column)
  return added
}

function compareColumnFields(where: string, have: ColumnDef, want: ColumnDef): void {
  const column = `column ${quoteName(want.name)}`
  if (normalizeSql(have.type) !== normalizeSql(want.type)) {
    throw destructive(
      `${where}: ${column} changes type from ${describeType(have.type)} to ` +
        `${describeType(want.type)}; retyping a column is refused`,
    )
  }
  if (have.notNull !== want.notNull) {
    const from = have.notNull ? 'NOT NULL' : 'nullable'
    const to = want.notNull ? 'NOT NULL' : 'nullable'
    throw destructive(
      `${where}: ${column} changes from ${from} to ${to}; changing NOT NULL is refused`,
    )
  }
  if (normalizeDefault(have.defaultSql) !== normalizeDefault(want.defaultSql)) {
    throw destructive(
      `${where}: ${column} changes DEFAULT from ${describeDefault(have.defaultSql)} to ` +
        `${describeDefault(want.defaultSql)}; changing a DEFAULT is refused`,
    )
  }
  if (have.pkIndex !== want.pkIndex) {
    throw destructive(
      `${where}: ${column} changes from ${describeKeyPlace(have.pkIndex)} to ` +
        `${describeKeyPlace(want.pkIndex)}; changing the primary key is refused`,
    )
  }
}

/**
 * Whatever the fields do not capture (COLLATE, CHECK, ...) must not change either: hosts set up
 * from the files and hosts that kept the old definition would behave differently. Checked after
 * the fields and the key, whose messages are more precise.
 */
function compareColumnDefinition(where: string, have: ColumnDef, want: ColumnDef): void {
  const column = `column ${quoteName(want.name)}`
  if (normalizeSql(have.definitionSql) !== normalizeSql(want.definitionSql)) {
    throw destructive(
      `${where}: ${column} changes definition from "${have.definitionSql}" to ` +
        `"${want.definitionSql}"; changing a column's definition is refused (write it as the ` +
        `database has it)`,
    )
  }
}

/** Table constraints (CHECK, PRIMARY KEY (...)) and options (WITHOUT ROWID, STRICT). */
function compareTableClauses(where: string, have: TableDef, want: TableDef): void {
  const haveParts = splitCreateTable(have.sql)
  const wantParts = splitCreateTable(want.sql)
  if (haveParts === null || wantParts === null) return
  const constraints = (parts: typeof haveParts): string =>
    parts.constraints.map((c) => c.sql).join(', ')
  if (
    normalizeSql(constraints(haveParts)) !== normalizeSql(constraints(wantParts)) ||
    normalizeSql(haveParts.options) !== normalizeSql(wantParts.options)
  ) {
    const describe = (parts: typeof haveParts): string =>
      `"${[constraints(parts), parts.options].filter((s) => s !== '').join(' ') || '(none)'}"`
    throw destructive(
      `${where}: the table constraints or options change from ${describe(haveParts)} to ` +
        `${describe(wantParts)}; changing them is refused (write them as the database has them)`,
    )
  }
}

/**
 * A new column must be addable by `ALTER TABLE ADD COLUMN` to a table that already has rows,
 * without rewriting them: not NOT NULL unless it has a non-NULL DEFAULT, and no default that
 * must be computed per row. (SQLite checks the default only when the table has rows, so a test
 * on an empty table would not catch it.)
 */
function checkAddable(where: string, column: ColumnDef): void {
  const name = quoteName(column.name)
  if (column.pkIndex > 0) {
    throw destructive(
      `${where}: new column ${name} joins the primary key; changing the primary key is refused`,
    )
  }
  const defaultSql = normalizeDefault(column.defaultSql)
  if (column.notNull && (defaultSql === null || defaultSql === 'null')) {
    throw new SchemaError(
      'SCHEMA_COLUMN_NOT_ADDABLE',
      `${where}: new column ${name} is NOT NULL without a non-NULL DEFAULT, which ALTER TABLE ` +
        `ADD COLUMN cannot add to a table with rows; give it a DEFAULT or make it nullable`,
    )
  }
  if (defaultSql !== null && !isConstantDefault(column)) {
    throw new SchemaError(
      'SCHEMA_COLUMN_NOT_ADDABLE',
      `${where}: new column ${name} has DEFAULT ${describeDefault(column.defaultSql)}, which ` +
        `ALTER TABLE ADD COLUMN refuses on a table with rows (no CURRENT_TIME, CURRENT_DATE, ` +
        `CURRENT_TIMESTAMP or expression in parentheses); use a constant DEFAULT`,
    )
  }
}

/**
 * SQLite strips the parentheses of `DEFAULT (expr)` in PRAGMA table_info, so the definition
 * text is where a parenthesised default shows.
 */
function isConstantDefault(column: ColumnDef): boolean {
  const tokens = tokenize(column.definitionSql)
  for (let i = 0; i < tokens.length; i++) {
    if (!isKeyword(tokens[i], 'DEFAULT')) continue
    const value = tokens[i + 1]
    if (isPunct(value, '(')) return false
    if (value?.kind === 'word' && NON_CONSTANT_DEFAULTS.has(value.text.toUpperCase())) return false
  }
  const bare = column.defaultSql?.trim().toUpperCase() ?? ''
  return !NON_CONSTANT_DEFAULTS.has(bare)
}

function normalizeDefault(sql: string | null): string | null {
  return sql === null ? null : normalizeSql(sql)
}

function describeType(type: string): string {
  return type === '' ? '(none)' : type
}

function describeDefault(sql: string | null): string {
  return sql === null ? '(none)' : sql
}

function describeKeyPlace(pkIndex: number): string {
  return pkIndex === 0 ? 'not in the primary key' : `primary-key column ${pkIndex}`
}

function destructive(message: string): SchemaError {
  return new SchemaError('SCHEMA_DESTRUCTIVE_CHANGE', message)
}
