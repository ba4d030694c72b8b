/**
 * The replication rules for one table, checked after its CREATE TABLE ran in the scratch
 * database: SQLite has then resolved every constraint, and the PRAGMAs say what it understood.
 */
import type Database from 'better-sqlite3'
import type { SourceLocation } from './model.ts'
import { readColumnInfo, readForeignKeys, readIndexInfo, readIndexList } from './read-table.ts'
import { formatLocation, quoteName, SchemaError } from './schema-error.ts'
import { identifierName, isKeyword } from './sql-tokens.ts'
import { splitCreateTable } from './table-sql.ts'
import type { TablePart } from './table-sql.ts'

/**
 * Names Patina keeps for its own tables, columns and indexes: anything starting with `__`, and
 * anything containing `__patina` (e.g. `vms__patina_clock`).
 */
export function isReservedName(name: string): boolean {
  const lower = name.toLowerCase()
  return lower.startsWith('__') || lower.includes('__patina')
}

/** `column "a"` or `columns "a", "b"`; an expression in an index shows as `<expression>`. */
export function describeColumns(names: readonly (string | null)[]): string {
  const quoted = names.map((n) => (n === null ? '<expression>' : quoteName(n)))
  return `${quoted.length === 1 ? 'column' : 'columns'} ${quoted.join(', ')}`
}

/** Throws the first rule the table `name` (created from `sql`) breaks. */
export function checkTable(
  db: Database.Database,
  name: string,
  sql: string,
  source: SourceLocation,
): void {
  const where = `${formatLocation(source)}table ${quoteName(name)}`
  const columns = readColumnInfo(db, name)

  for (const column of columns) {
    if (isReservedName(column.name)) {
      throw new SchemaError(
        'SCHEMA_RESERVED_NAME',
        `${where}: column ${quoteName(column.name)} uses a reserved name (names starting with ` +
          `"__" or containing "__patina" belong to Patina's internal tables); rename it`,
      )
    }
    if (column.hidden === 2 || column.hidden === 3) {
      throw new SchemaError(
        'SCHEMA_GENERATED_COLUMN',
        `${where}: column ${quoteName(column.name)} is a generated column; generated columns ` +
          `are not supported yet, make it a plain column or compute the value in your queries`,
      )
    }
  }

  checkAutoincrement(sql, where)

  const keyColumns = columns.filter((c) => c.pk > 0)
  if (keyColumns.length === 0) {
    throw new SchemaError(
      'SCHEMA_NO_PRIMARY_KEY',
      `${where} has no PRIMARY KEY; declare one (e.g. "id TEXT NOT NULL PRIMARY KEY"): ` +
        `replicated rows are matched across hosts by their primary key`,
    )
  }
  for (const column of keyColumns) {
    // SQLite reports notnull = 0 for a bare INTEGER PRIMARY KEY: a NULL there makes it invent a
    // local rowid, which would differ between hosts. So the NOT NULL must be written.
    if (column.notnull === 0) {
      throw new SchemaError(
        'SCHEMA_NULLABLE_PRIMARY_KEY',
        `${where}: primary-key column ${quoteName(column.name)} is nullable; declare it NOT NULL`,
      )
    }
  }

  for (const column of columns) {
    if (column.pk > 0 || column.notnull === 0) continue
    if (column.dflt_value === null || column.dflt_value.trim().toUpperCase() === 'NULL') {
      throw new SchemaError(
        'SCHEMA_NOT_NULL_WITHOUT_DEFAULT',
        `${where}: column ${quoteName(column.name)} is NOT NULL without a non-NULL DEFAULT; ` +
          `give it a DEFAULT or make it nullable (a host may receive a row's other columns ` +
          `before this one)`,
      )
    }
  }

  for (const index of readIndexList(db, name)) {
    if (index.unique === 0 || index.origin === 'pk') continue
    const indexColumns = readIndexInfo(db, index.name).map((c) => c.name)
    const what =
      index.origin === 'c'
        ? `unique index ${quoteName(index.name)} on ${describeColumns(indexColumns)}`
        : `UNIQUE constraint on ${describeColumns(indexColumns)}`
    throw new SchemaError(
      'SCHEMA_UNIQUE',
      `${where}: ${what} is not allowed: two hosts can write the same value at once and the ` +
        `merge could not keep both rows; remove UNIQUE (a plain CREATE INDEX is fine)`,
    )
  }

  const foreignKey = readForeignKeys(db, name)[0]
  if (foreignKey !== undefined) {
    const target =
      foreignKey.to === null
        ? quoteName(foreignKey.table)
        : `${quoteName(foreignKey.table)}(${quoteName(foreignKey.to)})`
    throw new SchemaError(
      'SCHEMA_FOREIGN_KEY',
      `${where}: column ${quoteName(foreignKey.from)} references ${target}; foreign keys are ` +
        `not allowed on replicated tables (rows arrive from other hosts in any order); ` +
        `remove the REFERENCES / FOREIGN KEY clause`,
    )
  }
}

/** AUTOINCREMENT can only be seen in the text: SQLite keeps no flag for it in the PRAGMAs. */
function checkAutoincrement(sql: string, where: string): void {
  const parts = splitCreateTable(sql)
  if (parts === null) return
  const uses = (part: TablePart): boolean => part.tokens.some((t) => isKeyword(t, 'AUTOINCREMENT'))
  const column = parts.columns.find(uses)
  const constraint = parts.constraints.find(uses)
  let subject: string
  if (column !== undefined) {
    subject = `column ${quoteName(column.name)}`
  } else if (constraint !== undefined) {
    // PRIMARY KEY (id AUTOINCREMENT): the column is the name just before the keyword.
    const at = constraint.tokens.findIndex((t) => isKeyword(t, 'AUTOINCREMENT'))
    const name = identifierName(constraint.tokens[at - 1])
    subject = name === null ? 'its PRIMARY KEY' : `column ${quoteName(name)}`
  } else {
    return
  }
  throw new SchemaError(
    'SCHEMA_AUTOINCREMENT',
    `${where}: ${subject} uses AUTOINCREMENT, which hands out ids from a per-host counter; ` +
      `remove AUTOINCREMENT and use keys that are unique across hosts (e.g. random ids or UUIDs)`,
  )
}
