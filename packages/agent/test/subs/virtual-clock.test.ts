/**
 * Goal: subscriptions run on the Clock they are given. Under a virtual clock, the tick that
 * matches a commit (`batch_ms`), the pacing of a full-mode subscription
 * (`full_eval_interval_ms`) and the idle sweep (`idle_timeout_ms`) fire when virtual time
 * passes their delay, and not before however long real time waits.
 *
 * Method: the subscriptions harness with `virtualClock` on a sim Scheduler (virtual time moves
 * only through `runUntil`), and streams read in process. Evaluations still run in reader
 * processes: they take real time, so a stream's next line is awaited, never slept for. Before
 * each deadline the test waits REAL_QUIET_MS of real time, much longer than the virtual delays
 * it checks would take on a real clock, and checks nothing happened; then it moves virtual time
 * to just before the deadline, checks again, and to the deadline, and the event follows.
 */
import assert from 'node:assert/strict'
import { afterEach, describe, it } from 'node:test'
import { Scheduler, virtualClock } from '../../src/sim/scheduler.ts'
import { SubsError } from '../../src/subs/errors.ts'
import type { OpenedStream } from '../../src/subs/subscriptions.ts'
import { testConnection } from './follow.ts'
import { openSubsApi, write, type SubsHarness } from './harness.ts'

/** Virtual delays, far above what real time passes during the test (EVENT_WAIT_MS and all). */
const BATCH_MS = 20_000
const FULL_EVAL_INTERVAL_MS = 60_000
const IDLE_TIMEOUT_MS = 600_000
/** Real time waited to see that nothing fires without virtual time (a real 1 ms tick would). */
const REAL_QUIET_MS = 150
/** Real time an event may take once its virtual deadline has passed (an evaluation's I/O). */
const EVENT_WAIT_MS = 5_000

let h: SubsHarness | null = null

afterEach(async () => {
  await h?.close()
  h = null
})

async function open(scheduler: Scheduler): Promise<SubsHarness> {
  h = await openSubsApi({
    clock: virtualClock(scheduler),
    subs: {
      batch_ms: BATCH_MS,
      full_eval_interval_ms: FULL_EVAL_INTERVAL_MS,
      idle_timeout_ms: IDLE_TIMEOUT_MS,
    },
  })
  return h
}

/**
 * A stream's event lines, one at a time (chunks split into lines). The next one must come
 * within EVENT_WAIT_MS of real time: on a real clock, the virtual delays would hold it longer.
 */
function events(stream: OpenedStream): { next(): Promise<string> } {
  const queued: string[] = []
  const read = async (): Promise<string> => {
    for (;;) {
      const event = queued.shift()
      if (event !== undefined) return event
      const r = await stream.lines.next()
      if (r.done === true) throw new Error('the stream ended')
      for (const line of r.value.split('\n')) if (line !== '') queued.push(line)
    }
  }
  return {
    next: async () => {
      let timer: NodeJS.Timeout | undefined
      try {
        return await Promise.race([
          read(),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => {
              reject(new Error(`no event within ${EVENT_WAIT_MS} ms of real time`))
            }, EVENT_WAIT_MS)
          }),
        ])
      } finally {
        clearTimeout(timer)
      }
    },
  }
}

async function realQuiet(): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, REAL_QUIET_MS))
}

function changeId(h: SubsHarness, id: string): number | undefined {
  return h.subs.list().find((s) => s.id === id)?.changeId
}

/** Reads columns, rows and eoq. */
async function readRows(e: ReturnType<typeof events>, rows: number): Promise<void> {
  for (let i = 0; i < rows + 2; i++) await e.next()
}

describe('subs - virtual clock', () => {
  it('subs - a commit is matched when virtual time reaches batch_ms, not before', async () => {
    const scheduler = new Scheduler()
    const h = await open(scheduler)
    const stream = await h.subs.subscribe({ sql: 'SELECT id, v FROM t' }, {}, testConnection())
    const e = events(stream)
    await readRows(e, 0)
    write(h, "INSERT INTO t (id, v) VALUES (1, 'one')")
    assert.ok(scheduler.pending > 0, 'the tick waits on the virtual clock')
    await realQuiet()
    assert.equal(changeId(h, stream.id), 0, 'no tick on real time')
    await scheduler.runUntil(BATCH_MS - 1)
    await realQuiet()
    assert.equal(changeId(h, stream.id), 0, 'no tick before batch_ms')
    await scheduler.runUntil(BATCH_MS)
    assert.equal(await e.next(), '{"change":["insert",1,[1,"one"],1]}')
    assert.equal(changeId(h, stream.id), 1)
    stream.close()
  })

  it('subs - a full-mode subscription re-runs full_eval_interval_ms after its last run', async () => {
    const scheduler = new Scheduler()
    const h = await open(scheduler)
    const stream = await h.subs.subscribe(
      { sql: 'SELECT count(*) AS n FROM t' },
      {},
      testConnection(),
    )
    assert.equal(h.subs.list()[0]?.mode, 'full')
    const e = events(stream)
    await readRows(e, 1) // its first run, at virtual time 0
    write(h, "INSERT INTO t (id, v) VALUES (1, 'one')")
    // The tick hands the change over at BATCH_MS; the re-run waits for the interval.
    await scheduler.runUntil(BATCH_MS)
    await realQuiet()
    assert.equal(changeId(h, stream.id), 0, 'not re-run before full_eval_interval_ms')
    await scheduler.runUntil(FULL_EVAL_INTERVAL_MS - 1)
    await realQuiet()
    assert.equal(changeId(h, stream.id), 0, 'not re-run before full_eval_interval_ms')
    await scheduler.runUntil(FULL_EVAL_INTERVAL_MS)
    // The count row changed from 0 to 1: its old row goes, its new one comes.
    assert.equal(await e.next(), '{"change":["delete",1,[0],1]}')
    assert.equal(await e.next(), '{"change":["insert",2,[1],2]}')
    assert.equal(changeId(h, stream.id), 2)
    stream.close()
  })

  it('subs - a subscription without listeners is dropped after idle_timeout_ms of virtual time', async () => {
    const scheduler = new Scheduler()
    const h = await open(scheduler)
    const stream = await h.subs.subscribe({ sql: 'SELECT id FROM t' }, {}, testConnection())
    await readRows(events(stream), 0)
    await scheduler.runUntil(1000)
    stream.close() // idle from virtual time 1000
    await scheduler.runUntil(1000 + IDLE_TIMEOUT_MS - 1)
    await realQuiet()
    assert.deepEqual(
      h.subs.list().map((s) => s.id),
      [stream.id],
      'kept until idle_timeout_ms has passed',
    )
    // The sweep runs every SUBS_SWEEP_INTERVAL_MAX_MS (1 s) here: by then it has seen it.
    await scheduler.runUntil(1000 + IDLE_TIMEOUT_MS + 1000)
    assert.deepEqual(h.subs.list(), [], 'dropped once idle for idle_timeout_ms')
    await assert.rejects(
      h.subs.attach(stream.id, {}, testConnection()),
      (err: unknown) =>
        err instanceof SubsError &&
        err.code === 'NOT_FOUND' &&
        err.message.includes('without a listener'),
    )
  })
})
