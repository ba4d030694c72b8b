/**
 * Turns a `/v1/transactions`, `/v1/queries` or `/v1/subscriptions` body into engine statements.
 * Accepts Corrosion's four statement forms, plus `["SQL"]` (the SQL without parameters, as people
 * write it next to the other array forms; Corrosion itself refuses it):
 *   "SQL"
 *   ["SQL"]
 *   ["SQL", [params...]]
 *   ["SQL", {"name": value}]          (names with or without their sigil: "id", ":id", "@id", "$id")
 *   {"query": "SQL", "params": [...], "named_params": {...}}
 * Parameter values: null; true/false (1/0); integers (INTEGER, any size); other numbers (REAL);
 * strings; arrays of bytes 0..255 (BLOB); any other JSON is bound as its JSON text.
 */
import type { Params, Statement } from '../crdt/replica.ts'
import type { SqlValue } from '../crdt/values.ts'
import { writeTyped, type JsonObject, type JsonValue } from './json.ts'

/** The body is JSON of the wrong shape: answered 400 with `code`. */
export class StatementShapeError extends Error {
  override readonly name = 'StatementShapeError'
  readonly code: 'INVALID_BODY' | 'TOO_MANY_STATEMENTS'
  constructor(
    message: string,
    code: 'INVALID_BODY' | 'TOO_MANY_STATEMENTS' = 'INVALID_BODY',
    options?: { readonly cause?: unknown },
  ) {
    super(message, options)
    this.code = code
  }
}

function isObject(v: JsonValue): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function isByteArray(v: JsonValue[]): boolean {
  return v.every((b) => typeof b === 'bigint' && b >= 0n && b <= 255n)
}

export function toParam(v: JsonValue): SqlValue {
  if (v === null || typeof v === 'bigint' || typeof v === 'number' || typeof v === 'string') {
    return v
  }
  if (typeof v === 'boolean') return v ? 1n : 0n
  if (Array.isArray(v) && isByteArray(v)) return Buffer.from(v.map(Number))
  return writeTyped(v)
}

function positional(v: JsonValue, where: string): SqlValue[] {
  if (!Array.isArray(v)) throw new StatementShapeError(`${where}: "params" must be an array`)
  return v.map(toParam)
}

function named(v: JsonValue, where: string): Record<string, SqlValue> {
  if (!isObject(v)) throw new StatementShapeError(`${where}: "named_params" must be an object`)
  const out: Record<string, SqlValue> = {}
  for (const [key, value] of Object.entries(v)) {
    const name = /^[:@$]/.test(key) ? key.slice(1) : key
    if (name === '') throw new StatementShapeError(`${where}: empty parameter name`)
    out[name] = toParam(value)
  }
  return out
}

function sqlText(v: JsonValue, where: string): string {
  if (typeof v !== 'string') throw new StatementShapeError(`${where}: the SQL must be a string`)
  if (v.trim() === '') throw new StatementShapeError(`${where}: the SQL is empty`)
  return v
}

const SHAPES =
  'a statement is "SQL", ["SQL"], ["SQL", [params]], ["SQL", {named params}] or {"query": "SQL", "params": [...], "named_params": {...}}'

export function toStatement(v: JsonValue, where: string): Statement {
  if (typeof v === 'string') return { sql: sqlText(v, where) }
  if (Array.isArray(v)) {
    if (v.length !== 1 && v.length !== 2) {
      throw new StatementShapeError(
        `${where}: expected ["SQL"] or ["SQL", params], an array of 1 or 2 elements (got ${v.length}); ${SHAPES}`,
      )
    }
    const [sql, params] = v as [JsonValue, JsonValue | undefined]
    const text = sqlText(sql, where)
    if (params === undefined) return { sql: text } // ["SQL"]: JSON has no undefined element
    if (Array.isArray(params)) return { sql: text, params: positional(params, where) }
    if (isObject(params)) return { sql: text, params: named(params, where) }
    throw new StatementShapeError(`${where}: params must be an array or an object; ${SHAPES}`)
  }
  if (isObject(v)) {
    const unknown = Object.keys(v).filter((k) => !['query', 'params', 'named_params'].includes(k))
    if (unknown.length > 0) {
      throw new StatementShapeError(`${where}: unknown field "${unknown[0] ?? ''}"; ${SHAPES}`)
    }
    if (!('query' in v)) throw new StatementShapeError(`${where}: missing "query"; ${SHAPES}`)
    const text = sqlText(v.query ?? null, where)
    const hasPositional = v.params !== undefined && v.params !== null
    const hasNamed = v.named_params !== undefined && v.named_params !== null
    if (hasPositional && hasNamed) {
      throw new StatementShapeError(`${where}: give "params" or "named_params", not both`)
    }
    let params: Params | undefined
    if (hasPositional) params = positional(v.params ?? null, where)
    if (hasNamed) params = named(v.named_params ?? null, where)
    return params === undefined ? { sql: text } : { sql: text, params }
  }
  throw new StatementShapeError(`${where}: ${SHAPES}`)
}

export function toStatements(body: JsonValue, maxStatements: number): Statement[] {
  if (!Array.isArray(body)) {
    throw new StatementShapeError(`the body must be a JSON array of statements; ${SHAPES}`)
  }
  if (body.length === 0) throw new StatementShapeError('the statement list is empty')
  if (body.length > maxStatements) {
    throw new StatementShapeError(
      `too many statements: ${body.length} (the limit is ${maxStatements}, [api] max_statements)`,
      'TOO_MANY_STATEMENTS',
    )
  }
  return body.map((s, i) => toStatement(s, `statement ${i + 1}`))
}
