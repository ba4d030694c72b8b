/**
 * Deadlines on the statements of one connection, through the native extension
 * native/patina_deadline.c (built at install by scripts/build-native.mjs): past the deadline a
 * watchdog thread interrupts the connection, and the running statement fails with
 * SQLITE_INTERRUPT. Used for the writer's local transactions (`[perf] sql_tx_timeout`).
 *
 * @example
 * const deadline = loadDeadline(db)
 * if (typeof deadline !== 'string') deadline.run(3000, () => db.prepare(sql).run())
 */
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type Database from 'better-sqlite3'

/** Where build-native.mjs writes the extension (the same from src/ and from dist/). */
export const DEADLINE_EXTENSION_PATH = fileURLToPath(
  new URL(
    `../../native/build/patina_deadline${process.platform === 'darwin' ? '.dylib' : '.so'}`,
    import.meta.url,
  ),
)

/** How to get the extension when it is missing (named in the agent's startup warning). */
export const DEADLINE_FIX =
  'install a C compiler (e.g. `apt-get install build-essential`) and run `npm rebuild patina` ' +
  '(in a checkout: `node packages/agent/scripts/build-native.mjs`)'

/** What `run` ended with; `timedOut`: the deadline passed and interrupted the connection. */
export type RunOutcome<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly error: unknown; readonly timedOut: boolean }

export class StatementDeadline {
  private readonly set: Database.Statement<[bigint, number]>
  private readonly key: bigint

  private constructor(db: Database.Database) {
    this.set = db
      .prepare<[bigint, number]>('SELECT patina_deadline(?, ?)')
      .pluck()
      .safeIntegers(false)
    // The first call binds the key: SQL sent by users, which cannot know it, cannot clear it.
    this.key = randomBytes(8).readBigInt64LE()
    this.set.get(this.key, 0)
  }

  /**
   * Loads the extension into `db` (better-sqlite3 enables the C loading API only; SQL's
   * load_extension() stays off). Returns why not when it cannot, for the startup warning.
   */
  static load(db: Database.Database, path = DEADLINE_EXTENSION_PATH): StatementDeadline | string {
    if (!existsSync(path)) return `${path} is not built`
    try {
      db.loadExtension(path)
      return new StatementDeadline(db)
    } catch (err) {
      return `${path} did not load: ${err instanceof Error ? err.message : String(err)}`
    }
  }

  /**
   * Runs `fn` with the connection interrupted `ms` after the start, then clears the deadline
   * (so nothing run after `fn` can be interrupted). Does not throw `fn`'s error: the outcome
   * holds it and whether the deadline fired.
   */
  run<T>(ms: number, fn: () => T): RunOutcome<T> {
    this.set.get(this.key, ms)
    let value: T
    try {
      value = fn()
    } catch (error) {
      return { ok: false, error, timedOut: this.clear() }
    }
    this.clear()
    return { ok: true, value }
  }

  /** Clears the deadline; true when it had fired. */
  private clear(): boolean {
    try {
      return this.set.get(this.key, 0) === 1
    } catch (err) {
      // The watchdog fired while this very statement ran: it fires once, so this one cannot.
      if ((err as { code?: unknown }).code !== 'SQLITE_INTERRUPT') throw err
      this.set.get(this.key, 0)
      return true
    }
  }
}
