/**
 * Goal: a subscription's long main-thread work (its first result over many rows, a full
 * re-evaluation's diff) comes in slices that let the event loop run in between, and slicing
 * changes nothing a listener sees: the same events with the same change ids as the work done
 * in one go, and a commit that lands between two slices is matched correctly.
 *
 * Method: two agents (subscriptions harness) on copies of one database of ROWS rows: one
 * slices (the default budget), the reference does everything in one slice (`sliceMs:
 * Infinity`, what the code did before slicing). Each subscribes to the table, then one commit
 * changes more rows than `max_pending_keys`, which forces a full re-evaluation (deletes,
 * updates and inserts). A timer probe (setInterval every PROBE_MS) records the longest gap
 * between its ticks while each agent works; the sliced one's must stay under MAX_GAP_MS, and
 * both streams must carry the same lines. A third run commits again as soon as the first
 * slice of the full diff reached the listener, while the rest of the diff is still to come,
 * and the stream must end at the query's result with contiguous change ids.
 *
 * Why the gap bound cannot flake: unsliced, the first result of ROWS rows blocks the loop for
 * its whole diff (over 500 ms here unloaded, several under load: it grows with the
 * load); sliced, the loop waits at most one slice (SUBS_SLICE_MS = 10 ms plus one window of
 * rows). MAX_GAP_MS is 25 times the slice, so only the scheduler or a GC pause keeping this
 * process off the CPU for that long could break it, and the unsliced figure is above it by
 * several times even on an idle machine. The bound is on blocking, not on speed.
 */
import assert from 'node:assert/strict'
import { cpSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { LineSplitter } from '@patina/protocol'
import { parseJson } from '../../src/api/json.ts'
import { Replica } from '../../src/crdt/replica.ts'
import type { OpenedStream } from '../../src/subs/subscriptions.ts'
import { testConnection } from './follow.ts'
import { expected, openSubsApi, StreamState, write, type SubsHarness } from './harness.ts'

const ROWS = 80_000
/** Rows the big commit updates (more than MAX_PENDING_KEYS: a full re-evaluation). */
const UPDATED = 10_000
const MAX_PENDING_KEYS = 2_000
const PROBE_MS = 5
const MAX_GAP_MS = 250
const SQL = 'SELECT id, v, n FROM t WHERE n % 10 <> 7'
/** The big commit: updates, deletes (n % 10 = 7 leaves the result) and inserts. */
const BIG_COMMIT = [
  `UPDATE t SET v = v || '+' WHERE id <= ${UPDATED}`,
  `UPDATE t SET n = 7 WHERE id > ${ROWS - 1000}`,
  `INSERT INTO t (id, v, n) SELECT id + ${ROWS}, 'new', id FROM t WHERE id <= 1000`,
]
/** History long enough for the whole diff: the test reads the stream in process, at its pace. */
/**
 * Change events of the full re-evaluation: updates of the UPDATED rows still in the result
 * (9 in 10), deletes of the last 1000 rows that were in it, inserts of 1000 new rows (9 in 10).
 */
const FULL_DIFF_CHANGES = UPDATED * 0.9 + 900 + 900
const SUBS = { max_pending_keys: MAX_PENDING_KEYS, max_history: 100_000 }

const dirs: string[] = []
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

/** A directory holding a database of ROWS rows in `t` (built once, copied for each agent). */
let seed: string | null = null
function seeded(): string {
  if (seed === null) {
    seed = mkdtempSync(join(tmpdir(), 'patina-slicing-'))
    dirs.push(seed)
    const h = Replica.open(join(seed, 'state.db'))
    h.applySchema([
      {
        path: 'schema.sql',
        sql: 'CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT, n INTEGER);',
      },
    ])
    h.transaction([
      {
        sql:
          `WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < ${ROWS}) ` +
          "INSERT INTO t (id, v, n) SELECT x, 'v' || x, x FROM s",
      },
    ])
    h.close()
  }
  const dir = mkdtempSync(join(tmpdir(), 'patina-slicing-'))
  dirs.push(dir)
  cpSync(seed, dir, { recursive: true })
  return dir
}

async function open(sliceMs?: number): Promise<SubsHarness> {
  return openSubsApi({
    dir: seeded(),
    schema: 'CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT, n INTEGER);',
    subs: SUBS,
    ...(sliceMs === undefined ? {} : { sliceMs }),
  })
}

/** The longest gap between the ticks of a PROBE_MS timer while `work` runs. */
async function longestGap(work: () => Promise<void>): Promise<number> {
  let last = performance.now()
  let gap = 0
  const timer = setInterval(() => {
    const now = performance.now()
    gap = Math.max(gap, now - last)
    last = now
  }, PROBE_MS)
  try {
    await work()
  } finally {
    clearInterval(timer)
  }
  return Math.max(gap, performance.now() - last)
}

/** A stream read in process, line by line, applied to a StreamState. */
class Reader {
  readonly state = new StreamState()
  readonly lines: string[] = []
  private readonly splitter = new LineSplitter()
  private readonly encoder = new TextEncoder()
  readonly stream: OpenedStream

  constructor(stream: OpenedStream) {
    this.stream = stream
  }

  /** Reads until `until()` holds after a line (bounded by the stream's own lines). */
  async readWhile(more: () => boolean): Promise<void> {
    while (more()) {
      const r = await this.stream.lines.next()
      if (r.done === true) throw new Error('the stream ended')
      for (const line of this.splitter.push(this.encoder.encode(r.value))) {
        this.lines.push(line)
        this.state.apply(parseJson(line))
      }
    }
  }

  changeId(h: SubsHarness): number {
    return h.subs.list().find((s) => s.id === this.stream.id)?.changeId ?? -1
  }

  /** Reads until the state is at the subscription's last change id. */
  async catchUp(h: SubsHarness): Promise<void> {
    await this.readWhile(() => !this.state.eoq || this.state.changeId < this.changeId(h))
  }
}

/** Subscribes, reads the first result, then the big commit's full re-evaluation. */
async function scenario(h: SubsHarness): Promise<{ reader: Reader; gaps: number[] }> {
  const gaps: number[] = []
  let reader: Reader | null = null
  gaps.push(
    await longestGap(async () => {
      reader = new Reader(await h.subs.subscribe({ sql: SQL }, {}, testConnection()))
      await h.subs.flush()
    }),
  )
  const r = reader as unknown as Reader
  await r.catchUp(h)
  assert.deepEqual(r.state.sorted(), expected(h, SQL), 'the first result')
  // The commit itself is the writer's work, not the subscription's: it runs before the probe.
  write(h, ...BIG_COMMIT)
  gaps.push(
    await longestGap(async () => {
      await h.subs.flush()
    }),
  )
  await r.catchUp(h)
  assert.deepEqual(r.state.sorted(), expected(h, SQL), 'after the full re-evaluation')
  return { reader: r, gaps }
}

describe('subs - slicing', () => {
  it('subs - a large first result and full diff never block the event loop long, and log the same events as one slice', async (t) => {
    const sliced = await open()
    let slicedLines: string[]
    let gaps: number[]
    try {
      const run = await scenario(sliced)
      slicedLines = run.reader.lines
      gaps = run.gaps
      await run.reader.stream.lines.return(undefined)
    } finally {
      await sliced.close()
    }
    const reference = await open(Number.POSITIVE_INFINITY)
    try {
      const run = await scenario(reference)
      await run.reader.stream.lines.return(undefined)
      // Beyond the eoq's timing field, every line is the same: rows, rowids, change ids.
      const strip = (lines: string[]): string[] =>
        lines.map((l) => (l.startsWith('{"eoq"') ? l.replace(/"time":[^,}]*/, '') : l))
      assert.equal(slicedLines.length, run.reader.lines.length)
      assert.deepEqual(strip(slicedLines), strip(run.reader.lines))
      assert.equal(run.reader.state.changeId, FULL_DIFF_CHANGES, 'the full diff logged them all')
    } finally {
      await reference.close()
    }
    t.diagnostic(
      `longest gaps (first result, full diff): ${gaps.map((g) => g.toFixed(0)).join(', ')} ms`,
    )
    for (const [i, gap] of gaps.entries()) {
      assert.ok(
        gap < MAX_GAP_MS,
        `${i === 0 ? 'the first result' : 'the full diff'} blocked the event loop for ${gap.toFixed(0)} ms`,
      )
    }
  })

  it('subs - a commit that arrives between two slices of a full diff is matched', async () => {
    const h = await open()
    try {
      const reader = new Reader(await h.subs.subscribe({ sql: SQL }, {}, testConnection()))
      await reader.catchUp(h)
      const before = reader.state.changeId
      write(h, ...BIG_COMMIT)
      // The first slice of the full diff reaches the listener; the rest is still to come.
      await reader.readWhile(() => reader.state.changeId === before)
      // What the subscription has logged so far (the reader may have only part of that).
      const midway = reader.changeId(h)
      assert.ok(midway < before + FULL_DIFF_CHANGES, `the diff is part way (${midway - before})`)
      // Rows the diff has done (low ids) and has not (high ids), and a new one.
      write(
        h,
        "UPDATE t SET v = 'again' WHERE id IN (1, 2, 19999, 20000)",
        `DELETE FROM t WHERE id IN (3, ${ROWS - 5000})`,
        "INSERT INTO t (id, v, n) VALUES (1000000, 'late', 1)",
      )
      await h.subs.flush()
      await reader.catchUp(h)
      // StreamState checked that change ids are contiguous and each change fits the rows.
      assert.deepEqual(reader.state.sorted(), expected(h, SQL))
      await reader.stream.lines.return(undefined)
    } finally {
      await h.close()
    }
  })
})
