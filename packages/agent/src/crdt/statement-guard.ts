/**
 * Decides whether a user statement may run, from the program SQLite compiles for it (EXPLAIN),
 * not from the SQL text: quoting, CTEs, views or odd spelling cannot hide what a statement
 * opens. Refused:
 * - any statement that reads or writes Patina's internal tables (clock tables, version index,
 *   bookkeeping); writes done by the capture triggers run in trigger sub-programs and are not
 *   part of the statement's own program;
 * - schema changes (they come from schema files and `patina reload`);
 * - transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT): each request is one transaction;
 * - ATTACH and DETACH, VACUUM, and PRAGMAs other than a list of read-only ones.
 */
import type Database from 'better-sqlite3'
import { GUARD_CACHE_MAX } from '../config/defaults.ts'
import { identifierName, isKeyword, isPunct, tokenize } from '../schema/sql-tokens.ts'
import { isInternalName } from './names.ts'

export type GuardVerdict = { readonly ok: true } | { readonly ok: false; readonly reason: string }

interface Op {
  addr: bigint | number
  opcode: string
  p1: bigint | number
  p2: bigint | number
  p3: bigint | number
  p4: string | null
}

const SCHEMA_OPS = new Set([
  'CreateBtree',
  'Destroy',
  'DropTable',
  'DropIndex',
  'DropTrigger',
  'ParseSchema',
  'RenameTable',
  'VCreate',
  'VDestroy',
  'SqlExec',
  'Vacuum',
  'IncrVacuum',
  'SetCookie',
])
const TRANSACTION_OPS = new Set(['AutoCommit', 'Savepoint'])
const PRAGMA_OPS = new Set(['JournalMode', 'Pragma', 'Checkpoint'])

/** PRAGMAs that only report; anything else (or any assignment) is refused. */
const READ_ONLY_PRAGMAS = new Set([
  'table_info',
  'table_xinfo',
  'table_list',
  'index_list',
  'index_info',
  'index_xinfo',
  'foreign_key_list',
  'collation_list',
  'function_list',
  'module_list',
  'pragma_list',
  'compile_options',
  'database_list',
  'data_version',
  'schema_version',
  'user_version',
  'application_id',
  'page_size',
  'page_count',
  'freelist_count',
  'encoding',
  'integrity_check',
  'quick_check',
  'foreign_key_check',
])

/** PRAGMAs whose argument in parentheses names what to report on (not a new value). */
const PRAGMAS_WITH_ARGUMENT = new Set([
  'table_info',
  'table_xinfo',
  'index_list',
  'index_info',
  'index_xinfo',
  'foreign_key_list',
  'integrity_check',
  'quick_check',
  'foreign_key_check',
])

const refusedPragma = (name: string): GuardVerdict => ({
  ok: false,
  reason: `PRAGMA ${name} is not allowed here: only read-only PRAGMAs are (it can change the agent's state)`,
})

/** The verdict on a PRAGMA statement, or null when `sql` is not one. */
function judgePragma(sql: string): GuardVerdict | null {
  const tokens = tokenize(sql)
  let i = 0
  if (isKeyword(tokens[i], 'EXPLAIN')) {
    i++
    if (isKeyword(tokens[i], 'QUERY') && isKeyword(tokens[i + 1], 'PLAN')) i += 2
  }
  if (!isKeyword(tokens[i], 'PRAGMA')) return null
  let name = identifierName(tokens[i + 1])
  let next = i + 2
  if (isPunct(tokens[next], '.')) {
    name = identifierName(tokens[next + 1])
    next += 2
  }
  const lower = (name ?? '').toLowerCase()
  const after = tokens[next]
  const endsHere = after === undefined || isPunct(after, ';')
  if (name === null || !READ_ONLY_PRAGMAS.has(lower)) return refusedPragma(name ?? '(unnamed)')
  if (endsHere) return { ok: true }
  if (isPunct(after, '(') && PRAGMAS_WITH_ARGUMENT.has(lower)) return { ok: true }
  return refusedPragma(lower)
}

export class StatementGuard {
  private readonly db: Database.Database
  private readonly explain = new Map<string, GuardVerdict>()
  private schemaVersion = -1
  private internalRoots = new Map<number, string>()
  private readonly schemaVersionStmt: Database.Statement

  constructor(db: Database.Database) {
    this.db = db
    this.schemaVersionStmt = db.prepare('PRAGMA schema_version').pluck().safeIntegers(false)
  }

  private refresh(): void {
    // Read on every check (cheap with a prepared statement): any schema change, by this
    // connection or another, invalidates the cached verdicts and the internal root pages.
    const version = this.schemaVersionStmt.get() as number
    if (version === this.schemaVersion) return
    this.schemaVersion = version
    this.explain.clear()
    this.internalRoots = new Map()
    const rows = this.db
      .prepare('SELECT name, tbl_name, rootpage FROM main.sqlite_schema WHERE rootpage > 0')
      .raw()
      .safeIntegers(false)
      .all() as [string, string, number][]
    for (const [name, table, root] of rows) {
      if (isInternalName(table) && !table.toLowerCase().startsWith('sqlite_')) {
        this.internalRoots.set(root, table)
      } else if (isInternalName(name) && !name.toLowerCase().startsWith('sqlite_')) {
        this.internalRoots.set(root, name)
      }
    }
  }

  /**
   * `args` are the statement's parameters as they will be bound (better-sqlite3 wants every
   * parameter bound, even for EXPLAIN); the verdict does not depend on their values.
   */
  check(sql: string, args: readonly unknown[] = []): GuardVerdict {
    this.refresh()
    let verdict = this.explain.get(sql)
    if (verdict === undefined) {
      verdict = this.judge(sql, args)
      if (this.explain.size >= GUARD_CACHE_MAX) this.explain.clear()
      this.explain.set(sql, verdict)
    }
    return verdict
  }

  private judge(sql: string, args: readonly unknown[]): GuardVerdict {
    // SQLite applies many PRAGMAs while it compiles them, so they are judged from tokens
    // before anything is prepared (comments skipped, quoted names unquoted).
    const pragma = judgePragma(sql)
    if (pragma !== null) return pragma
    const ops = this.db
      .prepare(`EXPLAIN ${sql}`)
      .safeIntegers(false)
      .all(...args) as Op[]
    // Trigger sub-programs follow the main program, their addresses starting again at 0.
    let last = -1
    for (const op of ops) {
      const addr = Number(op.addr)
      if (addr <= last) break
      last = addr
      const name = op.opcode
      if (name === 'OpenRead' || name === 'OpenWrite' || name === 'ReopenIdx') {
        if (Number(op.p3) === 0) {
          const table = this.internalRoots.get(Number(op.p2))
          if (table !== undefined) {
            return { ok: false, reason: `"${table}" is one of Patina's internal tables` }
          }
          if (name === 'OpenWrite' && Number(op.p2) === 1) {
            return {
              ok: false,
              reason: 'schema changes are made in schema files (then `patina reload`)',
            }
          }
        }
      } else if (name === 'Clear') {
        const table = this.internalRoots.get(Number(op.p1))
        if (table !== undefined) {
          return { ok: false, reason: `"${table}" is one of Patina's internal tables` }
        }
      } else if (SCHEMA_OPS.has(name)) {
        return {
          ok: false,
          reason:
            'schema changes are made in schema files (then `patina reload`), not by statements',
        }
      } else if (TRANSACTION_OPS.has(name)) {
        return {
          ok: false,
          reason:
            'transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT) is not allowed: each request runs as one transaction',
        }
      } else if (PRAGMA_OPS.has(name)) {
        return { ok: false, reason: "this PRAGMA is not allowed: it can change the agent's state" }
      } else if (name === 'Function' && /^sqlite_(attach|detach)\b/.test(op.p4 ?? '')) {
        return { ok: false, reason: 'ATTACH and DETACH are not allowed' }
      }
    }
    return { ok: true }
  }
}
