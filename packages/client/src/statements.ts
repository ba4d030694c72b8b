/**
 * Statements in the forms the agent accepts (docs/api.md), checked and written as JSON text
 * before anything is sent:
 *
 *   'SELECT 1'
 *   ['SELECT 1']                                           (the SQL without parameters)
 *   ['SELECT * FROM t WHERE id = ?', [1]]
 *   ['SELECT * FROM t WHERE id = :id', { id: 1 }]          (names with or without their sigil)
 *   { query: 'SELECT ...', params: [...] }  or  { query: 'SELECT ...', named_params: {...} }
 */
import { InvalidStatementError } from './errors.ts'
import { encodeParam, type ParamValue } from './values.ts'

export type PositionalParams = readonly ParamValue[]
export type NamedParams = Readonly<Record<string, ParamValue>>

/** One SQL statement with its parameters, in any of the agent's forms. */
export type Statement =
  | string
  | readonly [sql: string]
  | readonly [sql: string, params: PositionalParams | NamedParams]
  | {
      readonly query: string
      readonly params?: PositionalParams | null
      readonly named_params?: NamedParams | null
    }

const SHAPES =
  "a statement is 'SQL', ['SQL'], ['SQL', [params]], ['SQL', {named}] or { query: 'SQL', params?: [...], named_params?: {...} }"

function sqlText(sql: unknown, where: string): string {
  if (typeof sql !== 'string') {
    throw new InvalidStatementError(`${where}: the SQL must be a string; ${SHAPES}`)
  }
  if (sql.trim() === '') throw new InvalidStatementError(`${where}: the SQL is empty`)
  return JSON.stringify(sql)
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false
  const proto = Object.getPrototypeOf(v) as unknown
  return proto === Object.prototype || proto === null
}

function positionalText(params: unknown, where: string): string {
  if (!Array.isArray(params)) {
    throw new InvalidStatementError(`${where}: params must be an array; ${SHAPES}`)
  }
  return `[${params.map((p, i) => encodeParam(p, `${where}, parameter ${i + 1}`)).join(',')}]`
}

function namedText(params: unknown, where: string): string {
  if (!isPlainObject(params)) {
    throw new InvalidStatementError(`${where}: named params must be a plain object; ${SHAPES}`)
  }
  const parts: string[] = []
  for (const [key, value] of Object.entries(params)) {
    if (key.replace(/^[:@$]/, '') === '') {
      throw new InvalidStatementError(`${where}: empty parameter name`)
    }
    parts.push(`${JSON.stringify(key)}:${encodeParam(value, `${where}, parameter ${key}`)}`)
  }
  return `{${parts.join(',')}}`
}

/** JSON text of one statement; throws InvalidStatementError naming `where` and the problem. */
export function encodeStatement(s: unknown, where = 'statement'): string {
  if (typeof s === 'string') return sqlText(s, where)
  if (Array.isArray(s)) {
    if (s.length !== 1 && s.length !== 2) {
      throw new InvalidStatementError(
        `${where}: expected ['SQL'] or ['SQL', params], an array of 1 or 2 elements (got ${s.length}); ${SHAPES}`,
      )
    }
    const [sql, params] = s as [unknown, unknown]
    const text = sqlText(sql, where)
    // ['SQL'] is sent as the agent's plain "SQL" form, which Corrosion accepts too.
    if (s.length === 1) return text
    if (Array.isArray(params)) return `[${text},${positionalText(params, where)}]`
    if (isPlainObject(params)) return `[${text},${namedText(params, where)}]`
    throw new InvalidStatementError(
      `${where}: params must be an array or a plain object; ${SHAPES}`,
    )
  }
  if (isPlainObject(s)) {
    const unknown = Object.keys(s).filter((k) => !['query', 'params', 'named_params'].includes(k))
    if (unknown.length > 0) {
      throw new InvalidStatementError(`${where}: unknown field "${unknown[0] ?? ''}"; ${SHAPES}`)
    }
    const parts = [`"query":${sqlText(s.query, where)}`]
    const hasPositional = s.params !== undefined && s.params !== null
    const hasNamed = s.named_params !== undefined && s.named_params !== null
    if (hasPositional && hasNamed) {
      throw new InvalidStatementError(`${where}: give params or named_params, not both`)
    }
    if (hasPositional) parts.push(`"params":${positionalText(s.params, where)}`)
    if (hasNamed) parts.push(`"named_params":${namedText(s.named_params, where)}`)
    return `{${parts.join(',')}}`
  }
  throw new InvalidStatementError(`${where}: ${SHAPES}`)
}

/** JSON text of a transaction body: a non-empty array of statements. */
export function encodeStatements(statements: unknown): string {
  if (!Array.isArray(statements)) {
    throw new InvalidStatementError(`transaction() takes an array of statements; ${SHAPES}`)
  }
  if (statements.length === 0) {
    throw new InvalidStatementError('transaction() needs at least one statement')
  }
  return `[${statements.map((s, i) => encodeStatement(s, `statement ${i + 1}`)).join(',')}]`
}
