/**
 * Opens the SQLite file with the pragmas every Patina connection uses.
 */
import Database from 'better-sqlite3'
import { BUSY_TIMEOUT_MS, WRITER_CACHE_SIZE_KIB } from '../config/defaults.ts'

export type Synchronous = 'normal' | 'full'

export interface OpenDbOptions {
  /**
   * `normal` (default): WAL with synchronous=NORMAL. A committed transaction survives a crash of
   * the process; the last transactions before a power loss may be lost.
   * `full`: WAL with synchronous=FULL. Each commit is fsynced before it returns.
   */
  readonly synchronous?: Synchronous
  readonly readonly?: boolean
  /** Page cache per connection in KiB. */
  readonly cacheSizeKib?: number
}

export function openDb(path: string, options: OpenDbOptions = {}): Database.Database {
  const db = new Database(path, { readonly: options.readonly ?? false })
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
  if (!options.readonly) {
    db.pragma('journal_mode = WAL')
    db.pragma(`synchronous = ${options.synchronous === 'full' ? 'FULL' : 'NORMAL'}`)
  }
  db.pragma(`cache_size = -${options.cacheSizeKib ?? WRITER_CACHE_SIZE_KIB}`)
  db.pragma('foreign_keys = OFF')
  // REPLACE must not fire delete triggers: the merge path uses INSERT OR REPLACE to reset a row.
  db.pragma('recursive_triggers = OFF')
  db.defaultSafeIntegers(true)
  return db
}
