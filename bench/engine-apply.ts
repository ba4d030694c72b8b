/**
 * Benchmark 2, applying remote changes into a table of 1,000,000 rows: changes/s (one change =
 * one cell) of `replica.apply` for insert-only, update-only and mixed changesets, against a
 * plain SQLite upsert of the same rows (one statement per row, 1,000 rows per transaction).
 *
 * The changesets come from a second replica (another actor id) that writes the rows 250 per
 * transaction (1,000 cells per changeset) and are read back with changesFor. For updates that
 * replica first inserts the same ids (versions that are never shipped), so the shipped UPDATE
 * cells carry col_version 2 against the target's 1: every change wins.
 */
import { join } from 'node:path'
import type Database from 'better-sqlite3'
import type { FullChangeset } from '../packages/agent/src/crdt/changes.ts'
import { Replica } from '../packages/agent/src/crdt/replica.ts'
import type { ChangesetOutcome, Statement } from '../packages/agent/src/crdt/replica.ts'
import type { SqlValue } from '../packages/agent/src/crdt/values.ts'
import {
  copyDb,
  distinctIds,
  fmtInt,
  fmtMs,
  fmtRatio,
  fmtStats,
  openPlain,
  pairedRatios,
  REPEATS,
  removeDb,
  scaled,
  actorId,
  stats,
  timed,
  timeMs,
  warmWal,
  type BenchContext,
  type BenchModule,
  type BenchReport,
  type BigFixture,
  type Stats,
} from './lib/common.ts'
import { INSERT_SQL, localRow, remoteRow, SCHEMA, UPSERT_SQL, type Row } from './lib/fixture.ts'

/** Rows written by the remote replica per scenario (4 cells each). */
const CHANGED_ROWS = scaled(50_000)
/** Rows per remote transaction: 250 rows = 1,000 cells per changeset. */
const ROWS_PER_CHANGESET = 250
const CELLS_PER_ROW = 4
/** Changesets per `apply` call (one SQLite transaction). */
const CHANGESETS_PER_APPLY = 100
const PLAIN_ROWS_PER_TX = 1_000
/** Changesets per apply call that give the plain baseline's 1,000 rows per transaction. */
const PLAIN_SHAPED_APPLY = PLAIN_ROWS_PER_TX / ROWS_PER_CHANGESET
const REMOTE_SITE = actorId(0x0b)
const SEED_ROWS_PER_TX = 5_000

const GOAL_RATIO = 0.5
const GOAL_RATE = 70_000

const UPDATE_ALL_SQL = 'UPDATE t SET a = ?, b = ?, c = ?, d = ? WHERE id = ?'

interface Op {
  readonly kind: 'insert' | 'update'
  readonly id: number
}

interface Workload {
  readonly name: string
  readonly changesets: readonly FullChangeset[]
  /** The rows as the remote wrote them, in changeset order: what a plain upsert writes. */
  readonly rows: readonly Row[]
  readonly cells: number
  readonly inserts: number
  /** ms per changesFor call. */
  readonly changesForMs: Stats
}

function interleave(a: readonly Op[], b: readonly Op[]): Op[] {
  const out: Op[] = []
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i]
    const y = b[i]
    if (x !== undefined) out.push(x)
    if (y !== undefined) out.push(y)
  }
  return out
}

/** Writes `ops` on a fresh remote replica and reads every shipped transaction back. */
function makeWorkload(
  dir: string,
  name: string,
  ops: readonly Op[],
  fixture: BigFixture,
): Workload {
  const path = join(dir, 'remote.db')
  const remote = Replica.open(path, { actorId: REMOTE_SITE })
  try {
    remote.applySchema(SCHEMA)
    // The rows to update must exist remotely first, with the target's values (col_version 1).
    const seedIds = ops.filter((o) => o.kind === 'update').map((o) => o.id)
    for (let k = 0; k < seedIds.length; k += SEED_ROWS_PER_TX) {
      remote.transaction(
        seedIds
          .slice(k, k + SEED_ROWS_PER_TX)
          .map((id): Statement => ({ sql: INSERT_SQL, params: localRow(id) })),
      )
    }
    const versions: number[] = []
    const rows: Row[] = []
    for (let k = 0; k < ops.length; k += ROWS_PER_CHANGESET) {
      const statements = ops.slice(k, k + ROWS_PER_CHANGESET).map((op): Statement => {
        const row = remoteRow(op.id)
        rows.push(row)
        const [id, a, b, c, d] = row
        return op.kind === 'insert'
          ? { sql: INSERT_SQL, params: row }
          : { sql: UPDATE_ALL_SQL, params: [a, b, c, d, id] }
      })
      const { version } = remote.transaction(statements)
      if (version === null) throw new Error('remote transaction consumed no version')
      versions.push(version)
    }
    const changesets: FullChangeset[] = []
    const readMs: number[] = []
    for (const v of versions) {
      const [cs, ms] = timed(() => remote.changesFor(REMOTE_SITE, v))
      readMs.push(ms)
      if (cs === null) throw new Error(`remote does not hold version ${v}`)
      changesets.push(cs)
    }
    const cells = changesets.reduce((n, cs) => n + cs.changes.length, 0)
    if (cells !== ops.length * CELLS_PER_ROW) {
      throw new Error(`${name}: ${cells} cells for ${ops.length} rows`)
    }
    const inserts = ops.filter((o) => o.kind === 'insert').length
    if (inserts > 0 && ops.some((o) => o.kind === 'insert' && o.id <= fixture.rows)) {
      throw new Error('an inserted id already exists in the fixture')
    }
    return { name, changesets, rows, cells, inserts, changesForMs: stats(readMs) }
  } finally {
    remote.close()
    removeDb(path)
  }
}

/** Checks that the target holds every remote row and the expected row count. */
function verify(db: Database.Database, w: Workload, fixture: BigFixture, who: string): void {
  const count = db.prepare('SELECT count(*) FROM t').pluck().get() as bigint
  if (count !== BigInt(fixture.rows + w.inserts)) {
    throw new Error(`${who} ${w.name}: ${count} rows after apply`)
  }
  const read = db.prepare('SELECT id, a, b, c, d FROM t WHERE id = ?').raw()
  for (const row of w.rows) {
    const got = read.get(row[0]) as SqlValue[] | undefined
    if (got === undefined || got.some((v, i) => v !== row[i])) {
      throw new Error(`${who} ${w.name}: row ${row[0]} does not hold the remote values`)
    }
  }
}

function plainPass(fixture: BigFixture, path: string, w: Workload, check: boolean): number {
  copyDb(fixture.plainPath, path)
  const db = openPlain(path)
  try {
    warmWal(db)
    const upsert = db.prepare(UPSERT_SQL)
    const begin = db.prepare('BEGIN IMMEDIATE')
    const commit = db.prepare('COMMIT')
    const { rows } = w
    const ms = timeMs(() => {
      for (let k = 0; k < rows.length; k += PLAIN_ROWS_PER_TX) {
        begin.run()
        const end = Math.min(k + PLAIN_ROWS_PER_TX, rows.length)
        for (let i = k; i < end; i++) upsert.run(rows[i])
        commit.run()
      }
    })
    if (check) verify(db, w, fixture, 'plain')
    return ms
  } finally {
    db.close()
    removeDb(path)
  }
}

function enginePass(
  fixture: BigFixture,
  path: string,
  w: Workload,
  perApply: number,
  check: boolean,
): number {
  copyDb(fixture.enginePath, path)
  const replica = Replica.open(path)
  try {
    warmWal(replica.db)
    const batches: FullChangeset[][] = []
    for (let k = 0; k < w.changesets.length; k += perApply) {
      batches.push(w.changesets.slice(k, k + perApply))
    }
    const outcomes: ChangesetOutcome[][] = []
    const ms = timeMs(() => {
      for (const batch of batches) outcomes.push(replica.apply(batch))
    })
    let won = 0
    for (const o of outcomes.flat()) {
      if (!o.applied) throw new Error(`${w.name}: a changeset was not applied`)
      for (const x of o.won) if (x) won++
    }
    if (won !== w.cells) throw new Error(`${w.name}: ${won} of ${w.cells} changes won`)
    const last = w.changesets.at(-1)
    if (replica.headOf(REMOTE_SITE) !== last?.version) throw new Error('wrong remote head')
    if (check) verify(replica.db, w, fixture, 'engine')
    return ms
  } finally {
    replica.close()
    removeDb(path)
  }
}

interface Measure {
  readonly scenario: string
  readonly changesetsPerApply: number
  readonly cells: number
  readonly plain: Stats
  readonly engine: Stats
  readonly ratio: Stats
  readonly plainMs: readonly number[]
  readonly engineMs: readonly number[]
}

function measure(
  ctx: BenchContext,
  fixture: BigFixture,
  w: Workload,
  perApply: number,
  label: string,
): Measure {
  const plainMs: number[] = []
  const engineMs: number[] = []
  for (let r = 0; r < REPEATS; r++) {
    plainMs.push(plainPass(fixture, join(ctx.dir, 'apply-plain.db'), w, r === 0))
    engineMs.push(enginePass(fixture, join(ctx.dir, 'apply-engine.db'), w, perApply, r === 0))
    const rate = (ms: number): string => fmtInt((w.cells / ms) * 1000)
    ctx.progress(
      `apply ${label} ${r + 1}/${REPEATS}: plain ${rate(plainMs[r] as number)}, ` +
        `engine ${rate(engineMs[r] as number)} changes/s`,
    )
  }
  const plainRates = plainMs.map((ms) => (w.cells / ms) * 1000)
  const engineRates = engineMs.map((ms) => (w.cells / ms) * 1000)
  return {
    scenario: label,
    changesetsPerApply: perApply,
    cells: w.cells,
    plain: stats(plainRates),
    engine: stats(engineRates),
    ratio: pairedRatios(engineRates, plainRates),
    plainMs,
    engineMs,
  }
}

function run(ctx: BenchContext): BenchReport {
  const fixture = ctx.fixture()
  const updates = distinctIds(CHANGED_ROWS, fixture.rows, 42).map((id): Op => ({
    kind: 'update',
    id,
  }))
  const inserts = Array.from({ length: CHANGED_ROWS }, (_, i): Op => ({
    kind: 'insert',
    id: fixture.rows + 1 + i,
  }))
  const half = Math.floor(CHANGED_ROWS / 2)
  const scenarios: { name: string; ops: Op[]; perApply: number[] }[] = [
    { name: 'insert-only', ops: inserts, perApply: [CHANGESETS_PER_APPLY] },
    { name: 'update-only', ops: updates, perApply: [CHANGESETS_PER_APPLY, PLAIN_SHAPED_APPLY, 1] },
    {
      name: 'mixed 50/50',
      ops: interleave(updates.slice(0, half), inserts.slice(0, CHANGED_ROWS - half)),
      perApply: [CHANGESETS_PER_APPLY],
    },
  ]
  const measures: Measure[] = []
  const extraction: { scenario: string; changesForMs: Stats }[] = []
  for (const s of scenarios) {
    const w = makeWorkload(ctx.dir, s.name, s.ops, fixture)
    extraction.push({ scenario: s.name, changesForMs: w.changesForMs })
    for (const perApply of s.perApply) {
      const label = perApply === CHANGESETS_PER_APPLY ? s.name : `${s.name}, ${perApply}/apply`
      measures.push(measure(ctx, fixture, w, perApply, label))
    }
  }
  const main = measures.filter((m) => m.changesetsPerApply === CHANGESETS_PER_APPLY)
  const cellsPerChangeset = ROWS_PER_CHANGESET * CELLS_PER_ROW
  return {
    tables: [
      {
        title: `Applying remote changes into ${fmtInt(fixture.rows)} rows (changes/s, 1 change = 1 cell)`,
        headers: [
          'scenario',
          'changesets/apply',
          'plain upsert changes/s',
          'engine changes/s',
          'engine/plain',
          `> ${fmtInt(GOAL_RATE)}/s`,
        ],
        rows: measures.map((m) => [
          m.scenario,
          String(m.changesetsPerApply),
          fmtStats(m.plain),
          fmtStats(m.engine),
          fmtRatio(m.ratio),
          m.engine.median > GOAL_RATE ? 'yes' : 'no',
        ]),
        notes: [
          `${fmtInt(CHANGED_ROWS)} rows x ${CELLS_PER_ROW} cells per scenario; changesets of ` +
            `${fmtInt(cellsPerChangeset)} cells (${ROWS_PER_CHANGESET} rows); only apply() is timed.`,
          `plain: INSERT … ON CONFLICT(id) DO UPDATE of the same rows, ${fmtInt(PLAIN_ROWS_PER_TX)} ` +
            `rows per transaction; changes/s = rows/s x ${CELLS_PER_ROW}.`,
          'update-only: random existing ids, every cell wins (col_version 2 over 1); inserts: new ids.',
          `${CHANGESETS_PER_APPLY} changesets/apply = ${fmtInt(CHANGESETS_PER_APPLY * ROWS_PER_CHANGESET)} rows per ` +
            `transaction; ${PLAIN_SHAPED_APPLY}/apply = ${fmtInt(PLAIN_ROWS_PER_TX)} rows, as the plain baseline; 1/apply = one changeset as gossip delivers it.`,
          'engine/plain = per-repeat ratio of paired runs on fresh copies, median [min-max]; goal >= 0.5.',
          ...extraction.map(
            (e) =>
              `changesFor, ${e.scenario}: ${fmtMs(e.changesForMs)} ms per ${fmtInt(cellsPerChangeset)}-cell ` +
              'changeset (median over all changesets)',
          ),
        ],
      },
    ],
    summary: main.flatMap((m) => [
      {
        metric: `apply ${m.scenario} engine/plain`,
        value: m.ratio.median.toFixed(2),
        goal: `>= ${GOAL_RATIO}`,
        met: m.ratio.median >= GOAL_RATIO,
      },
      {
        metric: `apply ${m.scenario} changes/s`,
        value: fmtInt(m.engine.median),
        goal: `> ${fmtInt(GOAL_RATE)}`,
        met: m.engine.median > GOAL_RATE,
      },
    ]),
    data: {
      fixtureRows: fixture.rows,
      changedRows: CHANGED_ROWS,
      rowsPerChangeset: ROWS_PER_CHANGESET,
      changesetsPerApply: CHANGESETS_PER_APPLY,
      plainRowsPerTransaction: PLAIN_ROWS_PER_TX,
      measures,
      extraction,
    },
  }
}

export const engineApply: BenchModule = {
  name: 'engine-apply',
  title: 'Applying remote changes into a 1M-row replicated table vs plain upserts',
  run,
}
