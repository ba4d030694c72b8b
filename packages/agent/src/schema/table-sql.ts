/**
 * Cuts the text of a CREATE TABLE statement into its column definitions, table constraints and
 * table options, so each column's definition can be reused verbatim in ALTER TABLE ADD COLUMN.
 * Works on the statement as written and on the text SQLite stores in sqlite_schema alike.
 */
import { identifierName, isKeyword, isPunct, tokenize } from './sql-tokens.ts'
import type { Token } from './sql-tokens.ts'

export interface TablePart {
  /**
   * Source text from the part's first token to its last. Comments around it are left out on
   * purpose: SQLite copies the whole tail of `ALTER TABLE t ADD COLUMN ...` into the stored
   * CREATE TABLE, and a trailing `-- comment` there would swallow the closing parenthesis.
   */
  readonly sql: string
  readonly tokens: readonly Token[]
}

export interface ColumnPart extends TablePart {
  readonly name: string
}

export interface CreateTableParts {
  /** Column definitions in declaration order. */
  readonly columns: readonly ColumnPart[]
  /** Table constraints (PRIMARY KEY (...), CHECK (...), ...) in order. */
  readonly constraints: readonly TablePart[]
  /** What follows the closing parenthesis, e.g. `WITHOUT ROWID, STRICT`, or `''`. */
  readonly options: string
}

/** Keywords that start a table constraint rather than a column definition. */
const CONSTRAINT_KEYWORDS = ['CONSTRAINT', 'PRIMARY', 'UNIQUE', 'CHECK', 'FOREIGN']

/**
 * Returns null when the statement has no column list (CREATE TABLE ... AS SELECT) or its
 * parentheses do not balance (SQLite will report that).
 */
export function splitCreateTable(sql: string): CreateTableParts | null {
  const tokens = tokenize(sql)
  const open = tokens.findIndex((t) => isPunct(t, '(') || isKeyword(t, 'AS'))
  if (open === -1 || !isPunct(tokens[open], '(')) return null

  const parts: Token[][] = []
  let part: Token[] = []
  let depth = 0
  let close = -1
  for (let i = open + 1; i < tokens.length; i++) {
    const token = tokens[i]
    if (token === undefined) break
    if (isPunct(token, '(')) depth++
    if (isPunct(token, ')')) {
      if (depth === 0) {
        close = i
        break
      }
      depth--
    }
    if (depth === 0 && isPunct(token, ',')) {
      parts.push(part)
      part = []
    } else {
      part.push(token)
    }
  }
  if (close === -1) return null
  parts.push(part)

  const columns: ColumnPart[] = []
  const constraints: TablePart[] = []
  for (const partTokens of parts) {
    const first = partTokens[0]
    const last = partTokens[partTokens.length - 1]
    if (first === undefined || last === undefined) continue
    const slice: TablePart = { sql: sql.slice(first.start, last.end), tokens: partTokens }
    const name = identifierName(first)
    if (CONSTRAINT_KEYWORDS.some((k) => isKeyword(first, k)) || name === null) {
      constraints.push(slice)
    } else {
      columns.push({ ...slice, name })
    }
  }

  const afterClose = tokens.slice(close + 1)
  const firstOption = afterClose[0]
  const lastOption = afterClose[afterClose.length - 1]
  const options =
    firstOption === undefined || lastOption === undefined
      ? ''
      : sql.slice(firstOption.start, lastOption.end)

  return { columns, constraints, options }
}
