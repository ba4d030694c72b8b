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

/** Verdicts cached per SQL text, per schema version. */
export const GUARD_CACHE_MAX = 1024

export class StatementGuard {
  private readonly db: Database.Database
  private readonly explain = new Map<string, GuardVerdict>()
  private schemaVersion = -1
  private internalRoots = new Map<number, string>()

  constructor(db: Database.Database) {
    this.db = db
  }

  private refresh(): void {
    const version = Number(this.db.pragma('schema_version', { simple: true }))
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
    const pragma = /^\s*pragma\s+(?:"?main"?\s*\.\s*)?"?([a-z_]+)"?\s*(=|\()?/i.exec(sql)
    if (pragma !== null) {
      const name = (pragma[1] ?? '').toLowerCase()
      if (pragma[2] === '=' || !READ_ONLY_PRAGMAS.has(name)) {
        return {
          ok: false,
          reason: `PRAGMA ${name} is not allowed: it can change the agent's state`,
        }
      }
      if (name === 'user_version' || name === 'application_id') {
        if (pragma[2] === '(') {
          return {
            ok: false,
            reason: `PRAGMA ${name} is not allowed: it can change the agent's state`,
          }
        }
      }
    }
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
