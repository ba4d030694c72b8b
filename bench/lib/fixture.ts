/**
 * The test table, its row values, and the shared 1M-row fixture: a replicated table filled
 * through the engine and a plain table with the same rows, both as closed, checkpointed files
 * that each repeat copies.
 */
import { join } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import type Database from 'better-sqlite3'
import { Replica } from '../../packages/agent/src/crdt/replica.ts'
import type { SqlValue } from '../../packages/agent/src/crdt/values.ts'
import {
  checkpoint,
  fileSize,
  fmtInt,
  openPlain,
  REPEATS,
  removeDb,
  scaled,
  actorId,
  timeMs,
  type BigFixture,
} from './common.ts'

export const TABLE = 't'
export const TABLE_SQL =
  'CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, a TEXT, b INTEGER, c REAL, d TEXT)'
export const SCHEMA = [{ path: 'schema.sql', sql: TABLE_SQL }]

/** Site of the replica that owns the fixture (and of every target copied from it). */
export const FIXTURE_SITE = actorId(0x0a)

/** Rows of the big fixture: 1,000,000 (100,000 with BENCH_QUICK=1). */
export const FIXTURE_ROWS = scaled(1_000_000)
/** Rows per transaction of the bulk fill. */
export const FILL_CHUNK = scaled(100_000)

export type Row = [id: bigint, a: string, b: bigint, c: number, d: string]

export const INSERT_SQL = 'INSERT INTO t (id, a, b, c, d) VALUES (?, ?, ?, ?, ?)'
export const UPSERT_SQL =
  `${INSERT_SQL} ON CONFLICT (id) DO UPDATE SET ` +
  'a = excluded.a, b = excluded.b, c = excluded.c, d = excluded.d'

const pad = (i: number): string => String(i).padStart(33, '0')

/** Values of row `i` as the local writes and the bulk fill write them (~17 + int + real + 35). */
export function localRow(i: number): Row {
  return [BigInt(i), `a-${i}-abcdefghij`, BigInt(i * 7), i * 0.5 + 0.25, `d-${pad(i)}`]
}

/** Values of row `i` as the remote replica writes them: every column differs from localRow. */
export function remoteRow(i: number): Row {
  return [BigInt(i), `r-${i}-klmnopqrst`, BigInt(i * 3), i * 0.25 + 0.125, `e-${pad(i)}`]
}

/** One INSERT … SELECT of rows offset+1..offset+count with localRow's values. */
function bulkInsertSql(offset: number, count: number): string {
  return (
    `WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < ${count}) ` +
    `INSERT INTO t (id, a, b, c, d) SELECT x + ${offset}, 'a-' || (x + ${offset}) || '-abcdefghij', ` +
    `(x + ${offset}) * 7, (x + ${offset}) * 0.5 + 0.25, printf('d-%033d', x + ${offset}) FROM s`
  )
}

function chunks(total: number, size: number): [offset: number, count: number][] {
  const out: [number, number][] = []
  for (let offset = 0; offset < total; offset += size) {
    out.push([offset, Math.min(size, total - offset)])
  }
  return out
}

/** A cheap fingerprint of the whole table, to check that two tables hold the same rows. */
export function tableFingerprint(db: Database.Database): SqlValue[] {
  return db
    .prepare(
      'SELECT count(*), sum(b), total(c), sum(length(a)), sum(length(d)), ' +
        "sum(instr(a, '-k')), sum(substr(d, -3)) FROM t",
    )
    .raw()
    .get() as SqlValue[]
}

function fillEngine(path: string, rows: number): { ms: number; bytes: number } {
  const replica = Replica.open(path, { actorId: FIXTURE_SITE })
  try {
    replica.applySchema(SCHEMA)
    const ms = timeMs(() => {
      for (const [offset, count] of chunks(rows, FILL_CHUNK)) {
        const { version } = replica.transaction([{ sql: bulkInsertSql(offset, count) }])
        if (version === null) throw new Error('bulk insert consumed no version')
      }
    })
    checkpoint(replica.db)
    return { ms, bytes: fileSize(path) }
  } finally {
    replica.close()
  }
}

function fillPlain(path: string, rows: number): { ms: number; bytes: number } {
  const db = openPlain(path)
  try {
    db.exec(TABLE_SQL)
    const ms = timeMs(() => {
      for (const [offset, count] of chunks(rows, FILL_CHUNK)) {
        db.exec('BEGIN IMMEDIATE')
        db.exec(bulkInsertSql(offset, count))
        db.exec('COMMIT')
      }
    })
    checkpoint(db)
    return { ms, bytes: fileSize(path) }
  } finally {
    db.close()
  }
}

/**
 * Builds the fixture REPEATS times (each time into fresh files, timing the fill and recording
 * the file sizes) and keeps the last build.
 */
export function buildFixture(dir: string, progress: (line: string) => void): BigFixture {
  const engineFillSeconds: number[] = []
  const plainFillSeconds: number[] = []
  const engineBytes: number[] = []
  const plainBytes: number[] = []
  let enginePath = ''
  let plainPath = ''
  for (let r = 0; r < REPEATS; r++) {
    if (enginePath !== '') removeDb(enginePath)
    if (plainPath !== '') removeDb(plainPath)
    plainPath = join(dir, `fixture-plain-${r}.db`)
    enginePath = join(dir, `fixture-engine-${r}.db`)
    const plain = fillPlain(plainPath, FIXTURE_ROWS)
    const engine = fillEngine(enginePath, FIXTURE_ROWS)
    plainFillSeconds.push(plain.ms / 1000)
    engineFillSeconds.push(engine.ms / 1000)
    plainBytes.push(plain.bytes)
    engineBytes.push(engine.bytes)
    progress(
      `fixture build ${r + 1}/${REPEATS}: ${fmtInt(FIXTURE_ROWS)} rows, plain ${(plain.ms / 1000).toFixed(1)} s, ` +
        `engine ${(engine.ms / 1000).toFixed(1)} s`,
    )
  }
  const plainDb = openPlain(plainPath)
  const engineDb = openPlain(enginePath)
  try {
    const a = tableFingerprint(plainDb)
    const b = tableFingerprint(engineDb)
    if (!isDeepStrictEqual(a, b)) {
      throw new Error(`fixture tables differ: plain ${String(a)}, engine ${String(b)}`)
    }
  } finally {
    plainDb.close()
    engineDb.close()
  }
  return {
    rows: FIXTURE_ROWS,
    enginePath,
    plainPath,
    engineFillSeconds,
    plainFillSeconds,
    engineBytes,
    plainBytes,
  }
}
