/**
 * Benchmark 1, local writes: rows/s of INSERTs and of single-column UPDATEs into a replicated
 * table through `replica.transaction` (one statement per row, 1,000 rows per transaction),
 * against the same statements on a plain table in BEGIN IMMEDIATE/COMMIT of 1,000 rows.
 */
import { join } from 'node:path'
import { Replica } from '../packages/agent/src/crdt/replica.ts'
import type { Statement } from '../packages/agent/src/crdt/replica.ts'
import {
  fmtInt,
  fmtRatio,
  fmtStats,
  openPlain,
  pairedRatios,
  pragmas,
  REPEATS,
  removeDb,
  scaled,
  actorId,
  stats,
  timeMs,
  type BenchContext,
  type BenchModule,
  type BenchReport,
} from './lib/common.ts'
import { INSERT_SQL, localRow, SCHEMA, TABLE_SQL, type Row } from './lib/fixture.ts'

const ROWS = scaled(200_000)
const ROWS_PER_TX = 1_000
const UPDATE_SQL = 'UPDATE t SET b = ? WHERE id = ?'
/** The goal stated by the issue: at least half of plain SQLite. */
const GOAL_RATIO = 0.5

const updateArgs = (i: number): [bigint, bigint] => [BigInt(i * 11), BigInt(i)]

interface Pass {
  insertMs: number
  updateMs: number
}

function plainPass(path: string): Pass & { pragmas: Record<string, string> } {
  const db = openPlain(path)
  try {
    db.exec(TABLE_SQL)
    const insert = db.prepare(INSERT_SQL)
    const update = db.prepare(UPDATE_SQL)
    const begin = db.prepare('BEGIN IMMEDIATE')
    const commit = db.prepare('COMMIT')
    const insertMs = timeMs(() => {
      for (let start = 1; start <= ROWS; start += ROWS_PER_TX) {
        begin.run()
        for (let i = start; i < start + ROWS_PER_TX && i <= ROWS; i++) insert.run(localRow(i))
        commit.run()
      }
    })
    let updated = 0
    const updateMs = timeMs(() => {
      for (let start = 1; start <= ROWS; start += ROWS_PER_TX) {
        begin.run()
        for (let i = start; i < start + ROWS_PER_TX && i <= ROWS; i++) {
          updated += update.run(updateArgs(i)).changes
        }
        commit.run()
      }
    })
    if (updated !== ROWS) throw new Error(`plain update changed ${updated} rows`)
    return { insertMs, updateMs, pragmas: pragmas(db) }
  } finally {
    db.close()
    removeDb(path)
  }
}

function enginePass(path: string): Pass & { pragmas: Record<string, string> } {
  const replica = Replica.open(path, { actorId: actorId(0x01) })
  try {
    replica.applySchema(SCHEMA)
    let versions = 0
    const run = (statements: Statement[]): void => {
      const { results, version } = replica.transaction(statements)
      if (version === null || results.some((r) => r.rowsAffected !== 1)) {
        throw new Error('a benchmark transaction did not change every row')
      }
      versions++
    }
    const insertMs = timeMs(() => {
      for (let start = 1; start <= ROWS; start += ROWS_PER_TX) {
        const statements: Statement[] = []
        for (let i = start; i < start + ROWS_PER_TX && i <= ROWS; i++) {
          const params: Row = localRow(i)
          statements.push({ sql: INSERT_SQL, params })
        }
        run(statements)
      }
    })
    const updateMs = timeMs(() => {
      for (let start = 1; start <= ROWS; start += ROWS_PER_TX) {
        const statements: Statement[] = []
        for (let i = start; i < start + ROWS_PER_TX && i <= ROWS; i++) {
          statements.push({ sql: UPDATE_SQL, params: updateArgs(i) })
        }
        run(statements)
      }
    })
    if (replica.headOf(replica.actorId) !== versions) throw new Error('unexpected version count')
    return { insertMs, updateMs, pragmas: pragmas(replica.db) }
  } finally {
    replica.close()
    removeDb(path)
  }
}

function run(ctx: BenchContext): BenchReport {
  const plain: Pass[] = []
  const engine: Pass[] = []
  let pragmaCheck: Record<string, Record<string, string>> = {}
  for (let r = 0; r < REPEATS; r++) {
    const p = plainPass(join(ctx.dir, `writes-plain-${r}.db`))
    const e = enginePass(join(ctx.dir, `writes-engine-${r}.db`))
    plain.push({ insertMs: p.insertMs, updateMs: p.updateMs })
    engine.push({ insertMs: e.insertMs, updateMs: e.updateMs })
    pragmaCheck = { plain: p.pragmas, engine: e.pragmas }
    const rate = (ms: number): string => fmtInt((ROWS / ms) * 1000)
    ctx.progress(
      `writes ${r + 1}/${REPEATS}: insert plain ${rate(p.insertMs)}, engine ${rate(e.insertMs)} rows/s; ` +
        `update plain ${rate(p.updateMs)}, engine ${rate(e.updateMs)} rows/s`,
    )
  }
  const rates = (passes: Pass[], key: keyof Pass): number[] =>
    passes.map((p) => (ROWS / p[key]) * 1000)
  const measures = (['insertMs', 'updateMs'] as const).map((key) => {
    const plainRates = rates(plain, key)
    const engineRates = rates(engine, key)
    return {
      workload: key === 'insertMs' ? 'INSERT' : 'UPDATE 1 column',
      plain: stats(plainRates),
      engine: stats(engineRates),
      ratio: pairedRatios(engineRates, plainRates),
    }
  })
  const notes = [
    `${fmtInt(ROWS)} rows, ${fmtInt(ROWS_PER_TX)} rows per transaction, one prepared statement per row;`,
    'engine: replica.transaction([{ sql, params } x 1,000]); plain: BEGIN IMMEDIATE / run() x 1,000 / COMMIT.',
    'engine/plain = per-repeat ratio of paired runs (plain then engine, fresh files each), median [min-max].',
  ]
  return {
    tables: [
      {
        title: 'Local writes (rows/s)',
        headers: ['workload', 'plain rows/s', 'engine rows/s', 'engine/plain', 'goal'],
        rows: measures.map((m) => [
          m.workload,
          fmtStats(m.plain),
          fmtStats(m.engine),
          fmtRatio(m.ratio),
          `>= ${GOAL_RATIO}`,
        ]),
        notes,
      },
    ],
    summary: measures.map((m) => ({
      metric: `local ${m.workload} engine/plain`,
      value: `${m.ratio.median.toFixed(2)} (${fmtInt(m.engine.median)} vs ${fmtInt(m.plain.median)} rows/s)`,
      goal: `>= ${GOAL_RATIO}`,
      met: m.ratio.median >= GOAL_RATIO,
    })),
    data: {
      rows: ROWS,
      rowsPerTransaction: ROWS_PER_TX,
      pragmas: pragmaCheck,
      measures,
      samplesMs: { plain, engine },
    },
  }
}

export const engineWrites: BenchModule = {
  name: 'engine-writes',
  title: 'Local writes into a replicated table vs plain SQLite',
  run,
}
