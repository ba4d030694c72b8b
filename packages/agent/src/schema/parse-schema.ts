/**
 * Reads `.sql` schema files into a SchemaModel and enforces the replication rules.
 *
 * Method: every statement is classified by its leading tokens (only CREATE TABLE, CREATE INDEX
 * and DROP INDEX pass), then the accepted ones run in a scratch in-memory SQLite database and the
 * result is read back with PRAGMAs. SQLite is the parser: its syntax errors are reported as they
 * are, and what the model holds is what SQLite understood, not what a hand-written parser guessed.
 *
 * Tables run first, in file order, then index statements in file order, so an index may be
 * written before its table (e.g. in an earlier file).
 */
import Database from 'better-sqlite3'
import assert from 'node:assert/strict'
import { SCHEMA_ERROR_QUOTE_CHARS_MAX } from '../config/defaults.ts'
import { checkTable, describeColumns, isReservedName } from './check-table.ts'
import type { SchemaSource } from './load-schema-files.ts'
import type { IndexDef, SchemaModel, SourceLocation, TableDef } from './model.ts'
import { normalizeSql } from './normalize-sql.ts'
import { readIndexInfo, readIndexList, readTableDef } from './read-table.ts'
import { formatLocation, quoteName, SchemaError } from './schema-error.ts'
import { identifierName, isKeyword, isPunct, lineAt, splitStatements } from './sql-tokens.ts'
import type { Statement, Token } from './sql-tokens.ts'

export { loadSchemaFiles } from './load-schema-files.ts'
export type { SchemaSource } from './load-schema-files.ts'

interface Located {
  readonly statement: Statement
  readonly source: SourceLocation
  /** The statement from its object name on: equal for two spellings of one definition. */
  readonly normalized: string
}

interface CreateTable extends Located {
  readonly kind: 'table'
  readonly name: string
}

interface CreateIndex extends Located {
  readonly kind: 'index'
  readonly name: string
  readonly table: string
}

interface DropIndex extends Located {
  readonly kind: 'drop-index'
  readonly name: string
  readonly ifExists: boolean
}

type Classified = CreateTable | CreateIndex | DropIndex

export function parseSchema(sources: readonly SchemaSource[]): SchemaModel {
  const tableStatements: CreateTable[] = []
  const indexStatements: (CreateIndex | DropIndex)[] = []
  for (const { path, sql } of sources) {
    for (const statement of splitStatements(sql)) {
      const classified = classify(statement, { path, line: lineAt(sql, statement.start) })
      if (classified.kind === 'table') tableStatements.push(classified)
      else indexStatements.push(classified)
    }
  }

  const db = new Database(':memory:')
  try {
    const tables = createTables(db, tableStatements)
    const indexes = createIndexes(db, indexStatements, tables)
    return { tables, indexes }
  } finally {
    db.close()
  }
}

function createTables(
  db: Database.Database,
  statements: readonly CreateTable[],
): Map<string, TableDef> {
  const tables = new Map<string, TableDef>()
  const seen = new Map<string, CreateTable>()
  for (const create of statements) {
    const key = create.name.toLowerCase()
    const earlier = seen.get(key)
    if (earlier !== undefined) {
      // The same definition twice (say, in two files) is harmless; two different ones are not.
      if (earlier.normalized === create.normalized) continue
      throw new SchemaError(
        'SCHEMA_DUPLICATE_TABLE',
        `${formatLocation(create.source)}table ${quoteName(create.name)} is already defined at ` +
          `${earlier.source.path}:${earlier.source.line} with a different definition; ` +
          `keep one definition`,
      )
    }
    execute(db, create)
    checkTable(db, create.name, create.statement.text, create.source)
    tables.set(key, readTableDef(db, create.name, create.statement.text, create.source))
    seen.set(key, create)
  }
  return tables
}

function createIndexes(
  db: Database.Database,
  statements: readonly (CreateIndex | DropIndex)[],
  tables: ReadonlyMap<string, TableDef>,
): Map<string, IndexDef> {
  const live = new Map<string, CreateIndex>()
  for (const statement of statements) {
    const key = statement.name.toLowerCase()
    const where = formatLocation(statement.source)
    const earlier = live.get(key)
    if (statement.kind === 'drop-index') {
      if (earlier === undefined) {
        // A DROP of an index the files never create would only act on a live database, and
        // diffSchema already drops every index the files do not define.
        if (statement.ifExists) continue
        throw new SchemaError(
          'SCHEMA_UNKNOWN_INDEX',
          `${where}DROP INDEX ${quoteName(statement.name)}: no index of that name is created ` +
            `earlier in the schema files; remove the statement (indexes missing from the files ` +
            `are dropped anyway)`,
        )
      }
      execute(db, statement)
      live.delete(key)
      continue
    }

    if (earlier !== undefined) {
      if (earlier.normalized === statement.normalized) continue
      throw new SchemaError(
        'SCHEMA_DUPLICATE_INDEX',
        `${where}index ${quoteName(statement.name)} is already defined at ` +
          `${earlier.source.path}:${earlier.source.line} with a different definition; keep one ` +
          `definition, or DROP INDEX the first before redefining it`,
      )
    }
    if (!tables.has(statement.table.toLowerCase())) {
      throw new SchemaError(
        'SCHEMA_UNKNOWN_TABLE',
        `${where}index ${quoteName(statement.name)} is on table ${quoteName(statement.table)}, ` +
          `which the schema files do not create; create the table or fix the name`,
      )
    }
    execute(db, statement)
    checkIndex(db, statement)
    live.set(key, statement)
  }

  const indexes = new Map<string, IndexDef>()
  const stored = db.prepare<[string], { name: string; tbl_name: string; sql: string }>(
    "SELECT name, tbl_name, sql FROM sqlite_schema WHERE type = 'index' AND name = ?",
  )
  for (const [key, create] of live) {
    const row = stored.get(create.name)
    assert(row !== undefined, `index ${create.name} was created but is not in sqlite_schema`)
    indexes.set(key, { name: row.name, table: row.tbl_name, sql: row.sql })
  }
  return indexes
}

function checkIndex(db: Database.Database, create: CreateIndex): void {
  const entry = readIndexList(db, create.table).find(
    (row) => row.name.toLowerCase() === create.name.toLowerCase(),
  )
  if (entry === undefined || entry.unique === 0) return
  const columns = readIndexInfo(db, entry.name).map((c) => c.name)
  throw new SchemaError(
    'SCHEMA_UNIQUE',
    `${formatLocation(create.source)}table ${quoteName(create.table)}: unique index ` +
      `${quoteName(create.name)} on ${describeColumns(columns)} is not allowed: two hosts can ` +
      `write the same value at once and the merge could not keep both rows; use CREATE INDEX`,
  )
}

/** Runs one accepted statement in the scratch database; SQLite's errors become SchemaErrors. */
function execute(db: Database.Database, located: Located): void {
  try {
    db.prepare(located.statement.text).run()
  } catch (error) {
    if (!(error instanceof Database.SqliteError)) throw error
    throw new SchemaError(
      'SCHEMA_SYNTAX_ERROR',
      `${formatLocation(located.source)}SQLite refused the statement: ${error.message}`,
      { cause: error },
    )
  }
}

// --- Classification -------------------------------------------------------------------------

function classify(statement: Statement, source: SourceLocation): Classified {
  const tokens = statement.tokens
  if (isKeyword(tokens[0], 'CREATE')) {
    let i = 1
    const temp = isKeyword(tokens[i], 'TEMP') || isKeyword(tokens[i], 'TEMPORARY')
    if (temp) i++
    if (isKeyword(tokens[i], 'TABLE')) {
      if (temp) {
        throw new SchemaError(
          'SCHEMA_TEMP_TABLE',
          `${formatLocation(source)}CREATE ${tokens[1]?.text.toUpperCase() ?? 'TEMP'} TABLE ` +
            `${quoteName(nameAfter(tokens, i + 1))}: temporary tables are not replicated; ` +
            `remove TEMP`,
        )
      }
      return classifyTable(statement, source, i + 1)
    }
    const unique = isKeyword(tokens[i], 'UNIQUE')
    if (!temp && isKeyword(tokens[unique ? i + 1 : i], 'INDEX')) {
      return classifyIndex(statement, source, unique ? i + 2 : i + 1, unique)
    }
  }
  if (isKeyword(tokens[0], 'DROP') && isKeyword(tokens[1], 'INDEX')) {
    return classifyDropIndex(statement, source)
  }
  throw new SchemaError(
    'SCHEMA_UNSUPPORTED_STATEMENT',
    `${formatLocation(source)}${statementKind(tokens)} is not allowed in a schema file; only ` +
      `CREATE TABLE, CREATE INDEX and DROP INDEX are (keep data, views and triggers out of it)`,
  )
}

/** CREATE TABLE [IF NOT EXISTS] name ( ... ); `at` is the token after TABLE. */
function classifyTable(statement: Statement, source: SourceLocation, at: number): CreateTable {
  const tokens = statement.tokens
  const nameAt = skipIf(tokens, at, true)
  const { name, next } = readObjectName(statement, source, nameAt, 'table')
  if (isReservedName(name)) throw reservedName(source, 'table', name)
  if (isKeyword(tokens[next], 'AS')) {
    throw new SchemaError(
      'SCHEMA_CREATE_TABLE_AS',
      `${formatLocation(source)}table ${quoteName(name)}: CREATE TABLE ... AS SELECT is not ` +
        `allowed (it declares no primary key); write the columns and the PRIMARY KEY out`,
    )
  }
  if (!isPunct(tokens[next], '(')) throw syntaxError(statement, source)
  return { kind: 'table', name, statement, source, normalized: normalizedFrom(statement, nameAt) }
}

/** CREATE [UNIQUE] INDEX [IF NOT EXISTS] name ON table ( ... ); `at` is the token after INDEX. */
function classifyIndex(
  statement: Statement,
  source: SourceLocation,
  at: number,
  unique: boolean,
): CreateIndex {
  const tokens = statement.tokens
  const nameAt = skipIf(tokens, at, true)
  const { name, next } = readObjectName(statement, source, nameAt, 'index')
  if (isReservedName(name)) throw reservedName(source, 'index', name)
  const table = isKeyword(tokens[next], 'ON') ? identifierName(tokens[next + 1]) : null
  if (table === null) throw syntaxError(statement, source)
  return {
    kind: 'index',
    name,
    table,
    statement,
    source,
    // UNIQUE comes before the name: keep it, so that a UNIQUE redefinition is not taken as equal.
    normalized: `${unique ? 'unique ' : ''}${normalizedFrom(statement, nameAt)}`,
  }
}

/** DROP INDEX [IF EXISTS] name */
function classifyDropIndex(statement: Statement, source: SourceLocation): DropIndex {
  const at = skipIf(statement.tokens, 2, false)
  const { name } = readObjectName(statement, source, at, 'index')
  return {
    kind: 'drop-index',
    name,
    ifExists: at !== 2,
    statement,
    source,
    normalized: normalizedFrom(statement, at),
  }
}

/** Skips `IF NOT EXISTS` (or `IF EXISTS`) at `at`; returns the index of the next token. */
function skipIf(tokens: readonly Token[], at: number, not: boolean): number {
  if (!isKeyword(tokens[at], 'IF')) return at
  if (not) return isKeyword(tokens[at + 1], 'NOT') ? at + 3 : at
  return at + 2
}

/** Reads an unqualified object name at `at`; refuses `schema.name`. */
function readObjectName(
  statement: Statement,
  source: SourceLocation,
  at: number,
  what: 'table' | 'index',
): { name: string; next: number } {
  const tokens = statement.tokens
  const name = identifierName(tokens[at])
  if (name === null) throw syntaxError(statement, source)
  if (isPunct(tokens[at + 1], '.')) {
    const unqualified = identifierName(tokens[at + 2]) ?? ''
    throw new SchemaError(
      'SCHEMA_QUALIFIED_NAME',
      `${formatLocation(source)}${what} ${quoteName(name)}.${quoteName(unqualified)}: schema ` +
        `files describe the main database only; write the name without a schema prefix`,
    )
  }
  return { name, next: at + 1 }
}

/** The name at `at` for an error message, or `?` when there is none. */
function nameAfter(tokens: readonly Token[], at: number): string {
  return identifierName(tokens[skipIf(tokens, at, true)]) ?? '?'
}

function normalizedFrom(statement: Statement, at: number): string {
  const from = statement.tokens[at]
  return normalizeSql(from === undefined ? '' : statement.text.slice(from.start - statement.start))
}

function reservedName(source: SourceLocation, what: string, name: string): SchemaError {
  return new SchemaError(
    'SCHEMA_RESERVED_NAME',
    `${formatLocation(source)}${what} ${quoteName(name)} uses a reserved name (names starting ` +
      `with "__" or containing "__patina" belong to Patina's internal tables); rename it`,
  )
}

/**
 * A statement whose shape the classifier cannot follow. SQLite is asked to compile it (in a
 * database of its own, without running it) so that the message is SQLite's.
 */
function syntaxError(statement: Statement, source: SourceLocation): SchemaError {
  const probe = new Database(':memory:')
  try {
    probe.prepare(statement.text)
  } catch (error) {
    if (error instanceof Database.SqliteError) {
      return new SchemaError(
        'SCHEMA_SYNTAX_ERROR',
        `${formatLocation(source)}SQLite refused the statement: ${error.message}`,
        { cause: error },
      )
    }
    throw error
  } finally {
    probe.close()
  }
  const quoted = statement.text.slice(0, SCHEMA_ERROR_QUOTE_CHARS_MAX)
  return new SchemaError(
    'SCHEMA_SYNTAX_ERROR',
    `${formatLocation(source)}cannot read the statement "${quoted}"; write ` +
      `CREATE TABLE name (...), CREATE INDEX name ON table (...) or DROP INDEX name`,
  )
}

const OBJECT_KINDS = new Set(['TABLE', 'INDEX', 'VIEW', 'TRIGGER'])

/** `CREATE VIEW`, `CREATE VIRTUAL TABLE`, `DROP TABLE`, `INSERT`, ... for messages. */
function statementKind(tokens: readonly Token[]): string {
  const first = tokens[0]
  if (first?.kind !== 'word') {
    return `a statement starting with ${JSON.stringify(first?.text ?? '')}`
  }
  const words = [first.text.toUpperCase()]
  if (['CREATE', 'DROP', 'ALTER'].includes(words[0] ?? '')) {
    for (const token of tokens.slice(1, 4)) {
      if (token.kind !== 'word') break
      const word = token.text.toUpperCase()
      words.push(word)
      if (OBJECT_KINDS.has(word)) break
    }
  }
  return words.join(' ')
}
