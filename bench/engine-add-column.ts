/**
 * Benchmark 3, adding a nullable column to the 1,000,000-row replicated table with
 * `applySchema` (the same CREATE TABLE plus `e TEXT`): time, metadata rows written and versions
 * consumed (both must be 0), against `ALTER TABLE t ADD COLUMN e TEXT` on the plain table.
 */
import { join } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { Replica } from '../packages/agent/src/crdt/replica.ts'
import {
  copyDb,
  checkpoint,
  fileSize,
  fmtInt,
  fmtMs,
  fmtStats,
  openPlain,
  pairedRatios,
  REPEATS,
  removeDb,
  stats,
  timed,
  timeMs,
  warmWal,
  type BenchContext,
  type BenchModule,
  type BenchReport,
  type BigFixture,
} from './lib/common.ts'
import { TABLE_SQL } from './lib/fixture.ts'

const SCHEMA_WITH_E = [{ path: 'schema.sql', sql: TABLE_SQL.replace(/\)$/, ', e TEXT)') }]

interface Counters {
  changes: bigint
  totalChanges: bigint
  head: number
  clockRows: bigint
  versionIndexRows: bigint
}

function counters(replica: Replica): Counters {
  // changes() and total_changes() first: the counts below are reads and do not move them.
  const [changes, totalChanges] = replica.db
    .prepare('SELECT changes(), total_changes()')
    .raw()
    .get() as [bigint, bigint]
  const count = (sql: string): bigint => replica.db.prepare(sql).pluck().get() as bigint
  return {
    changes,
    totalChanges,
    head: replica.headOf(replica.actorId),
    clockRows: count('SELECT count(*) FROM "t__patina_clock"'),
    versionIndexRows: count('SELECT count(*) FROM "t__patina_vidx"'),
  }
}

interface EnginePass {
  ms: number
  noopMs: number
  before: Counters
  after: Counters
  stampedE: bigint
  bytesBefore: number
  bytesAfter: number
}

function enginePass(fixture: BigFixture, path: string): EnginePass {
  copyDb(fixture.enginePath, path)
  const bytesBefore = fileSize(path)
  const replica = Replica.open(path)
  try {
    warmWal(replica.db)
    const before = counters(replica)
    const [plan, ms] = timed(() => replica.applySchema(SCHEMA_WITH_E))
    if (plan.newColumns.length !== 1 || plan.newTables.length !== 0) {
      throw new Error('applySchema did not plan exactly one new column')
    }
    const after = counters(replica)
    const stampedE = replica.db
      .prepare('SELECT count(*) FROM "t__patina_clock" WHERE "__v_e" IS NOT NULL')
      .pluck()
      .get() as bigint
    // The same schema again: the fixed cost of reading, parsing and diffing the schema.
    const noopMs = timeMs(() => replica.applySchema(SCHEMA_WITH_E))
    checkpoint(replica.db)
    return { ms, noopMs, before, after, stampedE, bytesBefore, bytesAfter: fileSize(path) }
  } finally {
    replica.close()
    removeDb(path)
  }
}

function plainPass(
  fixture: BigFixture,
  path: string,
): { ms: number; totalChanges: bigint; bytesBefore: number; bytesAfter: number } {
  copyDb(fixture.plainPath, path)
  const bytesBefore = fileSize(path)
  const db = openPlain(path)
  try {
    warmWal(db)
    const ms = timeMs(() => db.exec('ALTER TABLE t ADD COLUMN e TEXT'))
    const totalChanges = db.prepare('SELECT total_changes()').pluck().get() as bigint
    checkpoint(db)
    return { ms, totalChanges, bytesBefore, bytesAfter: fileSize(path) }
  } finally {
    db.close()
    removeDb(path)
  }
}

function run(ctx: BenchContext): BenchReport {
  const fixture = ctx.fixture()
  const engine: EnginePass[] = []
  const plain: ReturnType<typeof plainPass>[] = []
  for (let r = 0; r < REPEATS; r++) {
    const p = plainPass(fixture, join(ctx.dir, 'alter-plain.db'))
    const e = enginePass(fixture, join(ctx.dir, 'alter-engine.db'))
    plain.push(p)
    engine.push(e)
    ctx.progress(
      `add column ${r + 1}/${REPEATS}: plain ${p.ms.toFixed(2)} ms, engine ${e.ms.toFixed(2)} ms`,
    )
  }
  const first = engine[0] as EnginePass
  const firstPlain = plain[0] as ReturnType<typeof plainPass>
  // Everything but the timings must be the same in every repeat.
  const shape = (e: EnginePass): unknown => [e.before, e.after, e.stampedE, e.bytesAfter]
  const stable = engine.every((e) => isDeepStrictEqual(shape(e), shape(first)))
  const plainMs = stats(plain.map((p) => p.ms))
  const engineMs = stats(engine.map((e) => e.ms))
  const noopMs = stats(engine.map((e) => e.noopMs))
  const ratio = pairedRatios(
    engine.map((e) => e.ms),
    plain.map((p) => p.ms),
  )
  const versions = first.after.head - first.before.head
  const written = first.after.totalChanges - first.before.totalChanges
  const delta = (a: bigint | number, b: bigint | number): string => {
    const d = Number(b) - Number(a)
    return d > 0 ? `+${fmtInt(d)}` : fmtInt(d)
  }
  const row = (name: string, a: bigint | number, b: bigint | number, must: string): string[] => [
    name,
    fmtInt(Number(a)),
    fmtInt(Number(b)),
    delta(a, b),
    must,
  ]
  const checks = [
    row('clock rows with "__v_e" IS NOT NULL', 0, first.stampedE, 'must stay 0'),
    row('versions of the local site (headOf)', first.before.head, first.after.head, 'must stay'),
    row('total_changes()', first.before.totalChanges, first.after.totalChanges, 'must stay'),
    row('changes()', first.before.changes, first.after.changes, ''),
    row('clock rows (t__patina_clock)', first.before.clockRows, first.after.clockRows, ''),
    row(
      'version index rows (t__patina_vidx)',
      first.before.versionIndexRows,
      first.after.versionIndexRows,
      '',
    ),
    row('engine main file bytes', first.bytesBefore, first.bytesAfter, ''),
    row('plain main file bytes', firstPlain.bytesBefore, firstPlain.bytesAfter, ''),
    row('plain total_changes()', 0, firstPlain.totalChanges, ''),
  ]
  const noMetadata = first.stampedE === 0n && written === 0n
  return {
    tables: [
      {
        title: `Adding a nullable column to ${fmtInt(fixture.rows)} rows (ms)`,
        headers: ['operation', 'plain ms', 'engine ms', 'engine/plain'],
        rows: [
          [
            'ADD COLUMN e TEXT',
            fmtMs(plainMs),
            fmtMs(engineMs),
            fmtStats(ratio, (n) => n.toFixed(1)),
          ],
          ['applySchema again, no change', '', fmtMs(noopMs), ''],
        ],
        notes: [
          'plain: ALTER TABLE t ADD COLUMN e TEXT; engine: applySchema with the CREATE TABLE plus e TEXT.',
          'engine/plain = per-repeat ratio of times (higher is slower), median [min-max].',
          'timed on fresh copies (flushed to disk) after one warm-up commit, so that neither side',
          "pays for creating the WAL and syncing its header (3-8 ms on this machine's disk).",
        ],
      },
      {
        title: 'What adding the column wrote (engine, before -> after applySchema)',
        headers: ['counter', 'before', 'after', 'delta', 'required'],
        rows: checks,
        notes: [
          stable
            ? `the same in all ${REPEATS} repeats; file sizes after wal_checkpoint(TRUNCATE)`
            : 'WARNING: the counters differed between repeats (see the JSON)',
        ],
      },
    ],
    summary: [
      {
        metric: 'add column: engine ms (plain ms)',
        value: `${engineMs.median.toFixed(2)} (${plainMs.median.toFixed(2)})`,
      },
      {
        metric: 'add column: metadata rows written',
        value: `${first.stampedE} stamped, total_changes +${written}`,
        goal: '0',
        met: noMetadata,
      },
      {
        metric: 'add column: versions consumed',
        value: String(versions),
        goal: '0',
        met: versions === 0,
      },
    ],
    data: {
      fixtureRows: fixture.rows,
      plainMs,
      engineMs,
      noopMs,
      ratio,
      stable,
      engine: engine.map((e) => ({
        ...e,
        before: { ...e.before },
        after: { ...e.after },
      })),
      plain,
    },
  }
}

export const engineAddColumn: BenchModule = {
  name: 'engine-add-column',
  title: 'Adding a nullable column to a 1M-row replicated table vs ALTER TABLE',
  run,
}
