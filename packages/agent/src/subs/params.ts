/**
 * Binds a statement's parameters by name, so that the subscription machinery can splice the
 * user's SQL into larger statements (restricted to changed keys, with parameters of its own)
 * without renumbering anything.
 *
 * Every parameter token (`?`, `?NNN`, `:name`, `@name`, `$name`) is replaced by `:__pN`, where N
 * is the index SQLite itself gives that parameter (`?` takes the highest index so far plus one,
 * `?NNN` is NNN, a name keeps the index of its first use). The values come from the request's
 * positional array (by index) or named object (by name, sigil optional, as for /v1/queries).
 */
import type { Params } from '../crdt/replica.ts'
import type { SqlValue } from '../crdt/values.ts'
import { tokenize } from '../schema/sql-tokens.ts'
import { SubsError } from './errors.ts'

export interface BoundStatement {
  /** The SQL with each parameter token replaced by `:__pN`. */
  readonly sql: string
  /** Values by name (`__pN`, no sigil), as better-sqlite3 binds them. */
  readonly params: Readonly<Record<string, SqlValue>>
}

/** SQLite's default cap on a parameter index (SQLITE_MAX_VARIABLE_NUMBER). */
const PARAM_INDEX_MAX = 32_766

export function bindStatement(sql: string, params: Params | undefined): BoundStatement {
  const tokens = tokenize(sql).filter((t) => t.kind === 'variable')
  const positional = Array.isArray(params) ? (params as readonly SqlValue[]) : null
  const named =
    params !== undefined && positional === null ? (params as Record<string, SqlValue>) : null
  const bound: Record<string, SqlValue> = {}
  const indexOfName = new Map<string, number>()
  let highest = 0
  let out = ''
  let at = 0
  for (const token of tokens) {
    let index: number
    let value: SqlValue | undefined
    if (token.text === '?' || /^\?\d+$/.test(token.text)) {
      index = token.text === '?' ? highest + 1 : Number(token.text.slice(1))
      if (!(index >= 1 && index <= PARAM_INDEX_MAX)) {
        throw new SubsError(
          'REFUSED',
          `parameter ${token.text} is out of range 1..${PARAM_INDEX_MAX}`,
        )
      }
      if (named !== null) {
        throw new SubsError(
          'REFUSED',
          `parameter ${token.text} is positional but the parameters were given by name`,
        )
      }
      value = positional?.[index - 1]
      if (value === undefined) {
        throw new SubsError(
          'REFUSED',
          `parameter ${token.text} (number ${index}) has no value: ${positional?.length ?? 0} given`,
        )
      }
    } else {
      const known = indexOfName.get(token.text)
      index = known ?? highest + 1
      indexOfName.set(token.text, index)
      const name = token.text.slice(1)
      if (named !== null) {
        value = Object.hasOwn(named, name) ? named[name] : undefined
        if (value === undefined) {
          throw new SubsError('REFUSED', `named parameter ${token.text} has no value`)
        }
      } else {
        // SQLite binds a positional value to a named parameter by its index.
        value = positional?.[index - 1]
        if (value === undefined) {
          throw new SubsError('REFUSED', `parameter ${token.text} has no value`)
        }
      }
    }
    highest = Math.max(highest, index)
    bound[`__p${index}`] = value
    out += `${sql.slice(at, token.start)}:__p${index}`
    at = token.end
  }
  out += sql.slice(at)
  if (positional !== null && positional.length > highest) {
    throw new SubsError(
      'REFUSED',
      `${positional.length} parameters given but the statement uses ${highest}`,
    )
  }
  return { sql: out, params: bound }
}

/** Text that is equal for two parameter sets exactly when their values are (type included). */
export function paramsKey(params: Readonly<Record<string, SqlValue>>): string {
  return Object.keys(params)
    .sort()
    .map((k) => `${k}=${typedText(params[k] ?? null)}`)
    .join(';')
}

function typedText(v: SqlValue): string {
  if (v === null) return 'n'
  if (typeof v === 'bigint') return `i${v}`
  if (typeof v === 'number') return `r${Object.is(v, -0) ? '-0' : String(v)}`
  if (typeof v === 'string') return `t${JSON.stringify(v)}`
  return `b${Buffer.from(v).toString('hex')}`
}

/** Parameters as JSON text that keeps their types (for the subscriptions database). */
export function encodeParams(params: Readonly<Record<string, SqlValue>>): string {
  return JSON.stringify(
    Object.fromEntries(Object.entries(params).map(([k, v]) => [k, typedText(v)])),
  )
}

export function decodeParams(text: string): Record<string, SqlValue> {
  const raw = JSON.parse(text) as Record<string, string>
  const out: Record<string, SqlValue> = {}
  for (const [k, t] of Object.entries(raw)) {
    const body = t.slice(1)
    switch (t.charAt(0)) {
      case 'n':
        out[k] = null
        break
      case 'i':
        out[k] = BigInt(body)
        break
      case 'r':
        out[k] = body === '-0' ? -0 : Number(body)
        break
      case 't':
        out[k] = JSON.parse(body) as string
        break
      case 'b':
        out[k] = Buffer.from(body, 'hex')
        break
      default:
        throw new Error(`corrupt stored parameter ${k}: ${t}`)
    }
  }
  return out
}
