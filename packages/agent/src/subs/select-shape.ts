/**
 * Reads the top-level structure of a SELECT from its tokens, to decide whether a subscription
 * can be maintained incrementally and to slice the parts the incremental queries are built from.
 *
 * Incremental means: `SELECT [ALL] cols FROM items [WHERE expr] [ORDER BY ...]`, where the items
 * are plain tables joined by `,`, `JOIN`, `INNER JOIN`, `CROSS JOIN` or `NATURAL` variants, with
 * any number of `LEFT [OUTER] JOIN`s after all of those, and no subquery, window, DISTINCT,
 * GROUP BY, HAVING, LIMIT or compound anywhere. Every result row then comes from exactly one
 * combination of source rows, which is what lets the matcher name it by their primary keys.
 *
 * The grammar accepted here is strict on purpose: anything it does not recognise makes the
 * statement "other" (maintained by full re-evaluation, or refused), never a guess. SQLite
 * still compiles every statement built from these slices, so a slice that is wrong fails
 * loudly rather than silently.
 */
import { identifierName, isKeyword, isPunct, tokenize, type Token } from '../schema/sql-tokens.ts'
import { SubsError } from './errors.ts'

export interface FromItem {
  /** The table name as written (unquoted). */
  readonly table: string
  /** The name the rest of the query uses for it: its alias, or the table name. */
  readonly alias: string
  /** On the right of a LEFT JOIN: its columns are NULL when nothing matches. */
  readonly nullable: boolean
}

export interface IncrementalShape {
  readonly kind: 'incremental'
  /** The result columns, as written. */
  readonly columnsText: string
  /** The whole FROM clause (without the keyword). */
  readonly fromText: string
  /** The FROM clause up to the first LEFT JOIN (the same as fromText without one). */
  readonly preservedFromText: string
  readonly whereText: string | null
  readonly orderText: string | null
  readonly items: readonly FromItem[]
}

export interface OtherShape {
  readonly kind: 'other'
  /** Why the statement is not of the incremental shape. */
  readonly reason: string
}

export type SelectShape = IncrementalShape | OtherShape

/** Words that end a FROM item (they cannot be an implicit alias). */
const NOT_ALIAS = new Set([
  'JOIN',
  'LEFT',
  'RIGHT',
  'FULL',
  'INNER',
  'CROSS',
  'NATURAL',
  'OUTER',
  'ON',
  'USING',
  'WHERE',
  'GROUP',
  'HAVING',
  'WINDOW',
  'ORDER',
  'LIMIT',
  'UNION',
  'INTERSECT',
  'EXCEPT',
  'INDEXED',
  'NOT',
  'RETURNING',
])

/** Keywords that start a clause after FROM, at the top level. */
const CLAUSES = [
  'WHERE',
  'GROUP',
  'HAVING',
  'WINDOW',
  'ORDER',
  'LIMIT',
  'UNION',
  'INTERSECT',
  'EXCEPT',
]

const other = (reason: string): OtherShape => ({ kind: 'other', reason })

function word(t: Token | undefined): string {
  return t?.kind === 'word' ? t.text.toUpperCase() : ''
}

/**
 * Classifies one statement. Throws REFUSED when it is not a single SELECT (or WITH ... SELECT,
 * or VALUES) at all.
 */
export function parseSelect(sql: string): SelectShape {
  const tokens = tokenize(sql)
  const semicolon = tokens.findIndex((t) => isPunct(t, ';'))
  if (semicolon >= 0 && semicolon < tokens.length - 1) {
    throw new SubsError('REFUSED', 'a subscription takes one statement, not several')
  }
  const body = semicolon >= 0 ? tokens.slice(0, semicolon) : tokens
  const first = word(body[0])
  if (first !== 'SELECT' && first !== 'WITH' && first !== 'VALUES') {
    throw new SubsError(
      'REFUSED',
      `a subscription needs a SELECT statement, not ${body[0] === undefined ? 'nothing' : `"${body[0].text}"`}`,
    )
  }
  if (first === 'WITH') return other('a WITH clause (common table expression)')
  if (first === 'VALUES') return other('a VALUES statement')

  // Top-level positions of the clause keywords, and features anywhere in the statement.
  let depth = 0
  let from = -1
  const clauseAt = new Map<string, number>()
  for (let i = 1; i < body.length; i++) {
    const t = body[i] as Token
    if (isPunct(t, '(')) depth++
    else if (isPunct(t, ')')) depth--
    const w = word(t)
    if (w === 'SELECT') return other('a subquery')
    if (w === 'OVER' || w === 'FILTER') return other('a window function or aggregate filter')
    if (depth !== 0 || w === '' || isPunct(body[i - 1], '.')) continue
    if (w === 'FROM' && from < 0 && !isDistinctFrom(body, i)) from = i
    else if (from >= 0 && CLAUSES.includes(w) && !clauseAt.has(w)) clauseAt.set(w, i)
  }
  const distinct = word(body[1]) === 'DISTINCT'
  if (distinct) return other('SELECT DISTINCT')
  for (const [clause, reason] of [
    ['UNION', 'a compound SELECT (UNION)'],
    ['INTERSECT', 'a compound SELECT (INTERSECT)'],
    ['EXCEPT', 'a compound SELECT (EXCEPT)'],
    ['GROUP', 'GROUP BY'],
    ['HAVING', 'HAVING'],
    ['WINDOW', 'a WINDOW clause'],
    ['LIMIT', 'LIMIT'],
  ] as const) {
    if (clauseAt.has(clause)) return other(reason)
  }
  if (from < 0) return other('no FROM clause')
  const whereAt = clauseAt.get('WHERE')
  const orderAt = clauseAt.get('ORDER')
  if (whereAt !== undefined && orderAt !== undefined && orderAt < whereAt) {
    return other('ORDER BY before WHERE')
  }
  const fromEnd = whereAt ?? orderAt ?? body.length
  const columnsStart = word(body[1]) === 'ALL' ? 2 : 1
  if (columnsStart >= from) return other('no result columns')
  const fromTokens = body.slice(from + 1, fromEnd)
  const parsed = parseFrom(fromTokens)
  if ('reason' in parsed) return other(parsed.reason)

  const text = (start: number, end: number): string =>
    sql.slice((body[start] as Token).start, (body[end - 1] as Token).end)
  let whereText: string | null = null
  if (whereAt !== undefined) {
    const end = orderAt ?? body.length
    if (end <= whereAt + 1) return other('an empty WHERE clause')
    whereText = text(whereAt + 1, end)
  }
  let orderText: string | null = null
  if (orderAt !== undefined) {
    if (!isKeyword(body[orderAt + 1], 'BY') || orderAt + 2 >= body.length) {
      return other('a malformed ORDER BY')
    }
    orderText = text(orderAt + 2, body.length)
  }
  const fromText = text(from + 1, fromEnd)
  const preservedFromText =
    parsed.firstLeftJoinAt === null ? fromText : text(from + 1, from + 1 + parsed.firstLeftJoinAt)
  return {
    kind: 'incremental',
    columnsText: text(columnsStart, from),
    fromText,
    preservedFromText,
    whereText,
    orderText,
    items: parsed.items,
  }
}

/** `a IS [NOT] DISTINCT FROM b` is an operator, not the FROM clause. */
function isDistinctFrom(tokens: readonly Token[], fromAt: number): boolean {
  return word(tokens[fromAt - 1]) === 'DISTINCT' && ['IS', 'NOT'].includes(word(tokens[fromAt - 2]))
}

interface ParsedFrom {
  readonly items: FromItem[]
  /** Offset (in the FROM tokens) of the first LEFT JOIN operator, or null. */
  readonly firstLeftJoinAt: number | null
}

/** Parses `item (joinop item constraint?)*` over the tokens of a FROM clause. */
function parseFrom(t: readonly Token[]): ParsedFrom | { readonly reason: string } {
  const items: FromItem[] = []
  let firstLeftJoinAt: number | null = null
  let i = 0

  const item = (nullable: boolean): string | null => {
    const nameToken = t[i]
    if (isPunct(nameToken, '(')) return 'a subquery or parenthesised join in FROM'
    let name =
      nameToken?.kind === 'word' || nameToken?.kind === 'quoted' ? identifierName(nameToken) : null
    if (name === null) return `an unexpected "${nameToken?.text ?? 'end'}" in FROM`
    i++
    if (isPunct(t[i], '.')) {
      if (name.toLowerCase() !== 'main') return `a table of schema "${name}"`
      const qualified = t[i + 1]
      name =
        qualified?.kind === 'word' || qualified?.kind === 'quoted'
          ? identifierName(qualified)
          : null
      if (name === null) return 'a malformed qualified table name in FROM'
      i += 2
    }
    if (isPunct(t[i], '(')) return `the table-valued function ${name}()`
    let alias = name
    if (isKeyword(t[i], 'AS')) {
      const a = t[i + 1]
      const aliasName = a?.kind === 'word' || a?.kind === 'quoted' ? identifierName(a) : null
      if (aliasName === null) return 'a malformed alias in FROM'
      alias = aliasName
      i += 2
    } else if ((t[i]?.kind === 'word' && !NOT_ALIAS.has(word(t[i]))) || t[i]?.kind === 'quoted') {
      alias = identifierName(t[i]) ?? name
      i++
    }
    if (isKeyword(t[i], 'INDEXED') && isKeyword(t[i + 1], 'BY') && t[i + 2] !== undefined) i += 3
    else if (isKeyword(t[i], 'NOT') && isKeyword(t[i + 1], 'INDEXED')) i += 2
    items.push({ table: name, alias, nullable })
    return null
  }

  /** Skips a join constraint: `ON expr` up to the next join operator, or `USING (...)`. */
  const constraint = (): string | null => {
    if (isKeyword(t[i], 'ON')) {
      i++
      const start = i
      let depth = 0
      while (i < t.length) {
        const tok = t[i] as Token
        if (isPunct(tok, '(')) depth++
        else if (isPunct(tok, ')')) depth--
        else if (depth === 0 && startsJoin(t, i)) break
        i++
      }
      return i === start ? 'an empty ON clause' : null
    }
    if (isKeyword(t[i], 'USING')) {
      if (!isPunct(t[i + 1], '(')) return 'a malformed USING clause'
      const close = t.findIndex((tok, k) => k > i && isPunct(tok, ')'))
      if (close < 0) return 'a malformed USING clause'
      i = close + 1
    }
    return null
  }

  const problem = item(false)
  if (problem !== null) return { reason: problem }
  while (i < t.length) {
    const opAt = i
    let left = false
    if (isPunct(t[i], ',')) {
      i++
    } else {
      if (isKeyword(t[i], 'NATURAL')) i++
      const w = word(t[i])
      if (w === 'LEFT') {
        left = true
        i++
        if (isKeyword(t[i], 'OUTER')) i++
      } else if (w === 'RIGHT' || w === 'FULL') {
        return { reason: `a ${w} JOIN` }
      } else if (w === 'INNER' || w === 'CROSS') {
        i++
      }
      if (!isKeyword(t[i], 'JOIN'))
        return { reason: `an unexpected "${t[opAt]?.text ?? ''}" in FROM` }
      i++
    }
    if (left) firstLeftJoinAt ??= opAt
    else if (firstLeftJoinAt !== null) return { reason: 'an inner join after a LEFT JOIN' }
    const p = item(left) ?? constraint()
    if (p !== null) return { reason: p }
  }
  return { items, firstLeftJoinAt }
}

function startsJoin(t: readonly Token[], i: number): boolean {
  if (isPunct(t[i], ',')) return true
  if (isPunct(t[i - 1], '.')) return false
  return ['JOIN', 'NATURAL', 'LEFT', 'RIGHT', 'FULL', 'INNER', 'CROSS'].includes(word(t[i]))
}
