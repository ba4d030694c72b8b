/**
 * Decides, at subscribe time, how a query is maintained, or refuses it with the reason.
 *
 * The facts come from SQLite, not from reading SQL text: the statement is compiled on a
 * read-only connection of its own, and its program (EXPLAIN) says which tables it reads (every
 * OpenRead, whatever the spelling: subqueries, CTEs, `IN table`, covering indexes), whether it
 * aggregates (Agg* opcodes) and which functions it calls. The text (select-shape.ts) is only
 * used to find the slices the incremental statements are built from, and each statement built
 * from them is compiled and checked (its key columns must come from the expected tables).
 *
 * Outcomes:
 * - incremental: inner joins of replicated tables, then LEFT JOINs, any WHERE that reads only
 *   the tables left of the first LEFT JOIN, any deterministic expressions, ORDER BY. Changes
 *   are matched by re-running the query restricted to the changed keys.
 * - full: anything else that reads only replicated tables and is deterministic (aggregates,
 *   GROUP BY, DISTINCT, LIMIT, subqueries, compounds, windows, CTEs, WHERE on a LEFT JOIN's
 *   right side...). Maintained exactly by re-running the whole query when a table it reads
 *   changes (at most once per `full_eval_interval_ms`). Refused when
 *   `[subscriptions] full_reevaluation = false`.
 * - refused: not a single read-only SELECT; reads a table that is not replicated (internal
 *   tables, sqlite_schema, pragma functions) or another database; results that change with
 *   time rather than with writes (random(), 'now', CURRENT_TIMESTAMP, changes(), ...).
 */
import Database from 'better-sqlite3'
import { CAPTURE_FUNCTIONS } from '../crdt/names.ts'
import type { CrrTable } from '../crdt/crr-table.ts'
import type { SqlValue } from '../crdt/values.ts'
import { normalizeSql } from '../schema/normalize-sql.ts'
import { isPunct, tokenize, type Token } from '../schema/sql-tokens.ts'
import { openDb } from '../store/open-db.ts'
import { messageOf, SubsError } from './errors.ts'
import {
  fullQuery,
  preservedWhereQuery,
  type KeyedItem,
  type QueryParts,
} from './incremental-sql.ts'
import { paramsKey, type BoundStatement } from './params.ts'
import { parseSelect } from './select-shape.ts'
import { PLANNER_CACHE_SIZE_KIB } from './subs-defaults.ts'

export interface PlanItem extends KeyedItem {
  /** The replicated table, as the replica names it. */
  readonly table: string
}

interface PlanBase {
  /** The statement with its parameters renamed (params.ts). */
  readonly sql: string
  readonly params: Readonly<Record<string, SqlValue>>
  /** Equal for two subscriptions exactly when they are the same query: they share a matcher. */
  readonly key: string
  readonly columns: readonly string[]
  /** Replicated tables (lower case) whose changes can change the result. */
  readonly tables: readonly string[]
  /** The statement that produces the whole result (with key columns when incremental). */
  readonly fullSql: string
}

export interface IncrementalPlan extends PlanBase {
  readonly mode: 'incremental'
  readonly items: readonly PlanItem[]
  readonly parts: QueryParts
  readonly hasLeftJoin: boolean
}

export interface FullPlan extends PlanBase {
  readonly mode: 'full'
  /** Why the query is not maintained incrementally. */
  readonly reason: string
}

export type Plan = IncrementalPlan | FullPlan

/** What the planner needs of the replica: its replicated tables. */
export interface TableCatalog {
  table(name: string): CrrTable | undefined
}

export interface PlannerOptions {
  /** The main database file. */
  readonly path: string
  readonly catalog: TableCatalog
  /** Accept queries that can only be maintained by re-running them. */
  readonly fullReevaluation: boolean
}

interface Op {
  readonly opcode: string
  readonly p2: bigint
  readonly p3: bigint
  readonly p4: string | null
}

/** Functions whose result changes without any write. */
const VOLATILE_FUNCTIONS = new Set([
  'random',
  'randomblob',
  'changes',
  'total_changes',
  'last_insert_rowid',
  'sqlite_offset',
])
/** Date and time functions: they read the clock when given 'now' or no time value. */
const DATE_FUNCTIONS = new Set([
  'date',
  'time',
  'datetime',
  'julianday',
  'unixepoch',
  'strftime',
  'timediff',
])
const CLOCK_KEYWORDS = new Set(['CURRENT_DATE', 'CURRENT_TIME', 'CURRENT_TIMESTAMP'])
/** Table-valued functions whose rows depend only on their arguments. */
const PURE_TABLE_FUNCTIONS = new Set(['json_each', 'json_tree', 'generate_series'])

/** A short signature of how a plan names rows; a restored subscription must match it. */
export function planSignature(plan: Plan): string {
  if (plan.mode === 'full') return 'full'
  return `incremental:${plan.items
    .map((it) => `${it.table.toLowerCase()}(${it.pk.join(',')})${it.nullable ? '?' : ''}`)
    .join(',')}`
}

export class Planner {
  private readonly db: Database.Database
  private readonly catalog: TableCatalog
  private readonly fullReevaluation: boolean

  constructor(options: PlannerOptions) {
    this.db = openDb(options.path, { readonly: true, cacheSizeKib: PLANNER_CACHE_SIZE_KIB })
    // A write to a replicated table compiles its capture triggers, which call these: without
    // them the refusal would read "no such function" instead of "not read-only".
    for (const name of CAPTURE_FUNCTIONS) {
      this.db.function(name, { varargs: true, deterministic: false }, () => {
        throw new Error(`${name}() is only available on the writer`)
      })
    }
    this.catalog = options.catalog
    this.fullReevaluation = options.fullReevaluation
  }

  close(): void {
    this.db.close()
  }

  /** Plans a bound statement; throws SubsError (REFUSED or SQL_ERROR) when it cannot be. */
  plan(bound: BoundStatement): Plan {
    const shape = parseSelect(bound.sql)
    let stmt: Database.Statement
    try {
      stmt = this.db.prepare(bound.sql)
    } catch (err) {
      throw new SubsError('SQL_ERROR', messageOf(err), { cause: err })
    }
    if (!stmt.readonly || !stmt.reader) {
      throw new SubsError('REFUSED', 'a subscription needs a read-only SELECT statement')
    }
    const columns = stmt.columns().map((c) => c.name)
    const program = this.explain(bound.sql, bound.params)
    this.refuseVolatile(bound, program.functions)
    const tables = [...program.tables]
    const base = {
      sql: bound.sql,
      params: bound.params,
      key: `${normalizeSql(bound.sql)}\u0000${paramsKey(bound.params)}`,
      columns,
    }

    let reason: string | null = shape.kind === 'other' ? shape.reason : null
    if (reason === null && (program.aggregates || this.callsAggregate(bound.sql))) {
      reason = 'an aggregate function'
    }
    if (reason === null && program.virtualTables) reason = 'a table-valued function'
    if (shape.kind === 'incremental' && reason === null) {
      const items: PlanItem[] = []
      for (const it of shape.items) {
        const crr = this.catalog.table(it.table)
        if (crr === undefined) {
          throw new SubsError('REFUSED', `"${it.table}" is not a replicated table`)
        }
        items.push({
          table: crr.name,
          alias: it.alias,
          pk: crr.pk.map((c) => c.name),
          nullable: it.nullable,
        })
      }
      const itemTables = new Set(items.map((it) => it.table.toLowerCase()))
      const outside = tables.find((t) => !itemTables.has(t))
      const parts: QueryParts = {
        columnsText: shape.columnsText,
        fromText: shape.fromText,
        whereText: shape.whereText,
        orderText: shape.orderText,
      }
      const hasLeftJoin = items.some((it) => it.nullable)
      if (outside !== undefined) {
        reason = `reads table "${outside}" outside its FROM clause`
      } else if (
        hasLeftJoin &&
        shape.whereText !== null &&
        !this.compiles(preservedWhereQuery(shape.preservedFromText, shape.whereText))
      ) {
        reason = 'WHERE reads a table on the right of a LEFT JOIN'
      } else {
        const fullSql = fullQuery(parts, items)
        const problem = this.checkKeyColumns(fullSql, columns.length, items)
        if (problem !== null) reason = problem
        else {
          return {
            ...base,
            mode: 'incremental',
            tables: [...itemTables],
            fullSql,
            items,
            parts,
            hasLeftJoin,
          }
        }
      }
    }
    reason ??= 'an unsupported shape'
    if (!this.fullReevaluation) {
      throw new SubsError(
        'REFUSED',
        `this query cannot be maintained incrementally (${reason}), and re-running it on ` +
          'every change is switched off ([subscriptions] full_reevaluation = false)',
      )
    }
    return { ...base, mode: 'full', tables, fullSql: bound.sql, reason }
  }

  /** Tables read, functions called, aggregation and virtual tables, from the program. */
  private explain(
    sql: string,
    params: Readonly<Record<string, SqlValue>>,
  ): { tables: Set<string>; functions: Set<string>; aggregates: boolean; virtualTables: boolean } {
    let ops: Op[]
    try {
      const explain = this.db.prepare(`EXPLAIN ${sql}`)
      ops = (Object.keys(params).length === 0 ? explain.all() : explain.all(params)) as Op[]
    } catch (err) {
      throw new SubsError('SQL_ERROR', messageOf(err), { cause: err })
    }
    const tables = new Set<string>()
    const functions = new Set<string>()
    let aggregates = false
    let virtualTables = false
    const byRoot = this.db
      .prepare(
        "SELECT tbl_name FROM sqlite_schema WHERE rootpage = ? AND type IN ('table', 'index')",
      )
      .pluck()
    for (const op of ops) {
      if (op.opcode === 'OpenRead' || op.opcode === 'ReopenIdx') {
        if (op.p3 !== 0n) {
          throw new SubsError('REFUSED', 'a subscription can only read the main database')
        }
        const name = byRoot.get(op.p2) as string | undefined
        const crr = name === undefined ? undefined : this.catalog.table(name)
        if (crr === undefined) {
          throw new SubsError(
            'REFUSED',
            `the query reads ${name === undefined ? 'an internal table' : `"${name}"`}, which is ` +
              'not a replicated table: its changes would never reach the subscription',
          )
        }
        tables.add(crr.name.toLowerCase())
      } else if (op.opcode === 'Function' || op.opcode === 'PureFunc') {
        const name = /^([^(]+)\(/.exec(op.p4 ?? '')?.[1]
        if (name !== undefined) functions.add(name.toLowerCase())
      } else if (op.opcode.startsWith('Agg') || op.opcode === 'Count') {
        // Count is count(*) answered from the b-tree's size, without AggStep.
        aggregates = true
      } else if (op.opcode === 'VOpen') {
        virtualTables = true
      }
    }
    return { tables, functions, aggregates, virtualTables }
  }

  /** Refuses results that change with time, not with writes. */
  private refuseVolatile(bound: BoundStatement, functions: ReadonlySet<string>): void {
    const volatile = [...functions].find((f) => VOLATILE_FUNCTIONS.has(f))
    if (volatile !== undefined) {
      throw new SubsError(
        'REFUSED',
        `the query calls ${volatile}(), whose result changes without any write`,
      )
    }
    const tokens = tokenize(bound.sql)
    const clock = tokens.find((t) => t.kind === 'word' && CLOCK_KEYWORDS.has(t.text.toUpperCase()))
    if (clock !== undefined) {
      throw new SubsError(
        'REFUSED',
        `the query uses ${clock.text.toUpperCase()}, which changes with time`,
      )
    }
    const now = (v: string): boolean => v.trim().toLowerCase() === 'now'
    const mentionsNow =
      tokens.some((t) => t.kind === 'string' && now(t.value)) ||
      Object.values(bound.params).some((v) => typeof v === 'string' && now(v))
    tokens.forEach((t, i) => {
      const name = t.kind === 'word' ? t.text.toLowerCase() : ''
      if (!isPunct(tokens[i + 1], '(') || isPunct(tokens[i - 1], '.')) return
      if (name.startsWith('pragma_')) {
        throw new SubsError('REFUSED', `${name}() reads the schema, which is not replicated data`)
      }
      if (t.kind === 'word' && !PURE_TABLE_FUNCTIONS.has(name) && this.isModule(name)) {
        throw new SubsError('REFUSED', `${name}() is not a replicated table`)
      }
      if (!DATE_FUNCTIONS.has(name)) return
      const args = argumentCount(tokens, i + 1)
      if (mentionsNow || args === 0 || (name === 'strftime' && args === 1)) {
        throw new SubsError(
          'REFUSED',
          `the query calls ${name}() with the current time ('now'), which changes without any write`,
        )
      }
    })
  }

  private modules: Set<string> | null = null
  /** Aggregate and window functions: name -> argument counts (-1: any). */
  private aggregateFunctions: Map<string, number[]> | null = null

  /**
   * A second opinion on aggregation, from the text: a call to a function SQLite lists as an
   * aggregate or window function with that many arguments (min(x) is an aggregate, min(x, y)
   * is not). Whatever the program looks like after SQLite's optimisations.
   */
  private callsAggregate(sql: string): boolean {
    if (this.aggregateFunctions === null) {
      this.aggregateFunctions = new Map()
      const rows = this.db
        .prepare("SELECT name, narg FROM pragma_function_list WHERE type IN ('a', 'w')")
        .raw()
        .all() as [string, bigint][]
      for (const [name, narg] of rows) {
        const key = name.toLowerCase()
        this.aggregateFunctions.set(key, [
          ...(this.aggregateFunctions.get(key) ?? []),
          Number(narg),
        ])
      }
    }
    const tokens = tokenize(sql)
    return tokens.some((t, i) => {
      if (t.kind !== 'word' || !isPunct(tokens[i + 1], '(') || isPunct(tokens[i - 1], '.'))
        return false
      const nargs = this.aggregateFunctions?.get(t.text.toLowerCase())
      if (nargs === undefined) return false
      const args = argumentCount(tokens, i + 1)
      return nargs.some(
        (n) => n < 0 || n === args || (args === 1 && n === 0 && isPunct(tokens[i + 2], '*')),
      )
    })
  }

  private isModule(name: string): boolean {
    this.modules ??= new Set(
      (this.db.prepare('PRAGMA module_list').pluck().all() as string[]).map((m) => m.toLowerCase()),
    )
    return this.modules.has(name)
  }

  private compiles(sql: string): boolean {
    try {
      this.db.prepare(sql)
      return true
    } catch {
      return false // any compile error means "not provably safe": full re-evaluation instead
    }
  }

  /**
   * Compiles the full incremental statement and checks that each appended key column comes
   * from the table the FROM parse says (so a misread alias can never name rows wrongly).
   */
  private checkKeyColumns(
    sql: string,
    userColumns: number,
    items: readonly PlanItem[],
  ): string | null {
    let cols: Database.ColumnDefinition[]
    try {
      cols = this.db.prepare(sql).columns()
    } catch (err) {
      return `its rows cannot be keyed (${messageOf(err)})`
    }
    const expected = items.flatMap((it) => it.pk.map((c) => [it.table, c] as const))
    if (cols.length !== userColumns + expected.length) return 'its rows cannot be keyed'
    for (let i = 0; i < expected.length; i++) {
      const col = cols[userColumns + i]
      const [table, column] = expected[i] as readonly [string, string]
      if (
        col?.table?.toLowerCase() !== table.toLowerCase() ||
        col.column?.toLowerCase() !== column.toLowerCase() ||
        col.database !== 'main'
      ) {
        return 'its rows cannot be keyed'
      }
    }
    return null
  }
}

/** Arguments of the call whose `(` is at `open`: 0 for `f()`, else top-level commas + 1. */
function argumentCount(tokens: readonly Token[], open: number): number {
  let depth = 0
  let count = 0
  for (let i = open; i < tokens.length; i++) {
    const t = tokens[i] as Token
    if (isPunct(t, '(')) depth++
    else if (isPunct(t, ')')) {
      depth--
      if (depth === 0) return i === open + 1 ? 0 : count + 1
    } else if (depth === 1 && isPunct(t, ',')) count++
  }
  return count + 1
}
