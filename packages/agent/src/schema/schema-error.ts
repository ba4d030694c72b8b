/**
 * The one error class of the schema module: a schema file or a schema change that Patina refuses.
 * These are user errors (bad input), not programmer errors: the caller reports them and carries on.
 */

import type { SourceLocation } from './model.ts'

/** Stable codes, one per rule; messages may change, codes do not. */
export type SchemaErrorCode =
  /** A path given to loadSchemaFiles does not exist. */
  | 'SCHEMA_FILE_NOT_FOUND'
  /** A path exists but could not be read. */
  | 'SCHEMA_FILE_UNREADABLE'
  /** A directory given to loadSchemaFiles holds no `.sql` file. */
  | 'SCHEMA_NO_FILES'
  /** SQLite itself rejected a statement (its message is quoted). */
  | 'SCHEMA_SYNTAX_ERROR'
  /** A statement other than CREATE TABLE, CREATE INDEX or DROP INDEX. */
  | 'SCHEMA_UNSUPPORTED_STATEMENT'
  | 'SCHEMA_TEMP_TABLE'
  | 'SCHEMA_CREATE_TABLE_AS'
  /** `main.t` or `other.t`: schema files describe the main database only. */
  | 'SCHEMA_QUALIFIED_NAME'
  /** A name starting with `__` or containing `__patina`. */
  | 'SCHEMA_RESERVED_NAME'
  | 'SCHEMA_NO_PRIMARY_KEY'
  | 'SCHEMA_NULLABLE_PRIMARY_KEY'
  | 'SCHEMA_NOT_NULL_WITHOUT_DEFAULT'
  /** UNIQUE column or table constraint, or CREATE UNIQUE INDEX. */
  | 'SCHEMA_UNIQUE'
  | 'SCHEMA_FOREIGN_KEY'
  | 'SCHEMA_AUTOINCREMENT'
  | 'SCHEMA_GENERATED_COLUMN'
  /** The same table created twice in the files with different definitions. */
  | 'SCHEMA_DUPLICATE_TABLE'
  /** The same index created twice in the files with different definitions. */
  | 'SCHEMA_DUPLICATE_INDEX'
  /** CREATE INDEX on a table the files do not create. */
  | 'SCHEMA_UNKNOWN_TABLE'
  /** DROP INDEX (without IF EXISTS) of an index the files do not create. */
  | 'SCHEMA_UNKNOWN_INDEX'
  /** Going from the database's schema to the files' would drop or change existing data. */
  | 'SCHEMA_DESTRUCTIVE_CHANGE'
  /** A new column that `ALTER TABLE ADD COLUMN` cannot add to a table holding rows. */
  | 'SCHEMA_COLUMN_NOT_ADDABLE'

export class SchemaError extends Error {
  override readonly name = 'SchemaError'
  readonly code: SchemaErrorCode

  constructor(code: SchemaErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}

/** The prefix `path:line: ` of messages about a definition read from a file. */
export function formatLocation(location: SourceLocation | undefined): string {
  return location === undefined ? '' : `${location.path}:${location.line}: `
}

/** Quotes a name for a message, the way SQLite quotes identifiers. */
export function quoteName(name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}
