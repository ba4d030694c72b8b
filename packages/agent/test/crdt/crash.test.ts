/**
 * Goal: a process killed in the middle of a write transaction leaves no half-recorded version:
 * on reopen the version bookkeeping (head, gaps, version index, clocks) matches the data
 * exactly, and the next local write continues from the recorded head.
 *
 * Method: a child process (fixtures/crash-writer.ts, run with tsx) opens a file-backed replica
 * and loops over transactions that each insert ROWS rows with one statement (a few hundred ms
 * each), printing `begin N` before and `committed N version V` after each. Once the parent has
 * seen `begin 3` it waits a fraction of the previous transaction's duration (a different one
 * each round, so the kill lands early, midway, and late: around COMMIT and its WAL checkpoint)
 * and sends SIGKILL to the child's PID. It then reopens the file with Replica.open and checks:
 * head is the number of transactions reported committed, or one more (killed after COMMIT but
 * before the print); exactly head * ROWS rows; every version 1..head serves one cell per
 * non-key column per row with seqs dense from 0; no gaps; clock and version index sizes agree;
 * integrity_check passes; the next write gets version head + 1. Three rounds in one test.
 */
import { actorIdHex } from '../../src/runtime/actor-id.ts'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { LineSplitter } from '@patina/protocol'
import { Replica } from '../../src/crdt/replica.ts'
import { tempReplicas } from './helpers.ts'

const ROWS = 50_000
/** Non-key columns of the child's table (v, w): cells per inserted row. */
const CELLS_PER_ROW = 2
const CHILD = fileURLToPath(new URL('./fixtures/crash-writer.ts', import.meta.url))
const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url))
/** How long one round may take before the test gives up on the child. */
const ROUND_TIMEOUT_MS = 15_000

interface ChildRun {
  readonly actorIdHex: string
  /** Transactions the child reported committed before it died. */
  readonly committed: number
  /** The child's own view, per reported commit: [transaction number, version]. */
  readonly reported: readonly (readonly [number, number])[]
  readonly pid: number
  readonly output: string
}

const children = new Set<ChildProcess>()

function killIfAlive(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
    process.kill(child.pid, 'SIGKILL')
  }
}

/**
 * Runs the writer on `path` and kills it during its third transaction, `fraction` of the way
 * through (the duration of the second transaction, as seen from here, is the yardstick).
 */
function runAndKill(path: string, fraction: number): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, path, String(ROWS)], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    children.add(child)
    /** The writer's stdout, line by line (its lines are what the test reads). */
    let stdout = ''
    const splitter = new LineSplitter()
    let stderr = ''
    let killTimer: NodeJS.Timeout | undefined
    let begin2 = 0
    let committed2 = 0
    const guard = setTimeout(() => {
      killIfAlive(child)
      reject(new Error(`the writer did not reach "begin 3" in time:\n${stdout}\n${stderr}`))
    }, ROUND_TIMEOUT_MS)
    child.stdout.on('data', (chunk: Buffer) => {
      for (const line of splitter.push(chunk)) {
        stdout += `${line}\n`
        if (line === 'begin 2') begin2 = performance.now()
        if (line.startsWith('committed 2 ')) committed2 = performance.now()
        if (line === 'begin 3' && killTimer === undefined) {
          const delay = Math.round(fraction * Math.max(committed2 - begin2, 50))
          killTimer = setTimeout(() => {
            killIfAlive(child)
          }, delay)
        }
      }
    })
    child.stderr.on('data', (chunk: string) => {
      stderr += chunk
    })
    child.on('error', (err) => {
      clearTimeout(guard)
      reject(err)
    })
    child.on('close', (code, signal: NodeJS.Signals | null) => {
      stdout += splitter.end()
      clearTimeout(guard)
      if (killTimer !== undefined) clearTimeout(killTimer)
      children.delete(child)
      if (signal !== 'SIGKILL') {
        reject(new Error(`the writer exited by itself (code ${code}):\n${stdout}\n${stderr}`))
        return
      }
      const ready = /^ready ([0-9a-f]{32})$/m.exec(stdout)
      const reported = [...stdout.matchAll(/^committed (\d+) version (\d+)$/gm)].map(
        (m) => [Number(m[1]), Number(m[2])] as const,
      )
      resolve({
        actorIdHex: ready?.[1] ?? '',
        committed: reported.length,
        reported,
        pid: child.pid ?? -1,
        output: stdout,
      })
    })
  })
}

function checkAfterCrash(path: string, run: ChildRun): number {
  const replica = Replica.open(path)
  try {
    assert.equal(actorIdHex(replica.actorId), run.actorIdHex, 'the same database')
    // The child's own view: transaction n got version n.
    assert.deepStrictEqual(
      run.reported,
      run.reported.map((_, i) => [i + 1, i + 1]),
    )
    const head = replica.headOf(replica.actorId)
    assert.ok(run.committed >= 2, `at least two transactions committed:\n${run.output}`)
    assert.ok(
      head === run.committed || head === run.committed + 1,
      `head ${head} is ${run.committed} (reported committed) or one more`,
    )

    const count = (sql: string): number => Number(replica.query(sql)[0]?.n)
    assert.equal(count('SELECT count(*) AS n FROM t'), head * ROWS, 'no partial transaction')
    assert.equal(count('SELECT max(id) AS n FROM t'), head * ROWS)
    assert.equal(count('SELECT count(*) AS n FROM "t__patina_clock"'), head * ROWS)
    assert.equal(count('SELECT count(*) AS n FROM "t__patina_vidx"'), head * ROWS)
    assert.equal(count('SELECT count(*) AS n FROM "t__patina_vidx" WHERE __refs <> 2'), 0)
    assert.equal(count('SELECT max(__dbv) AS n FROM "t__patina_vidx"'), head)

    assert.deepStrictEqual(replica.originStates(), [{ actorId: replica.actorId, head, gaps: [] }])
    for (let v = 1; v <= head; v++) {
      assert.equal(replica.holds(replica.actorId, v), true)
      const cs = replica.changesFor(replica.actorId, v)
      assert.ok(cs !== null, `version ${v} is held`)
      assert.equal(cs.changes.length, ROWS * CELLS_PER_ROW, `cells of version ${v}`)
      assert.equal(cs.lastSeq, ROWS * CELLS_PER_ROW - 1)
      cs.changes.forEach((c, i) => {
        if (c.seq !== i || c.dbVersion !== v || c.cl !== 1 || c.colVersion !== 1) {
          assert.fail(`version ${v}, change ${i}: seq ${c.seq}, dbVersion ${c.dbVersion}`)
        }
      })
      const cids = new Set(cs.changes.map((c) => c.cid))
      assert.deepStrictEqual([...cids].sort(), ['v', 'w'])
    }
    assert.equal(replica.holds(replica.actorId, head + 1), false)
    assert.equal(replica.changesFor(replica.actorId, head + 1), null)
    assert.deepStrictEqual(replica.db.pragma('integrity_check', { simple: true }), 'ok')

    // The next local write continues from the recorded head.
    const next = replica.transaction([{ sql: "INSERT INTO t (id, v, w) VALUES (-1, 'after', 0)" }])
    assert.equal(next.version, head + 1)
    return head
  } finally {
    replica.close()
  }
}

describe('crash - kill during a write transaction', () => {
  const tmp = tempReplicas('patina-crash-')
  after(() => {
    for (const child of children) killIfAlive(child)
    tmp.cleanup()
  })

  it('crash - after SIGKILL mid-transaction no version is half-recorded and bookkeeping matches data', async (t) => {
    // Early, in the middle, and late in the transaction (around COMMIT and its checkpoint).
    const fractions = [0.05, 0.5, 0.9].map((f) => f + Math.random() * 0.1)
    for (const [i, fraction] of fractions.entries()) {
      const path = join(tmp.dir, `crash-${i}.db`)
      const run = await runAndKill(path, fraction)
      // The child is gone: its PID no longer exists (it was reaped when 'close' fired).
      assert.throws(() => process.kill(run.pid, 0), { code: 'ESRCH' })
      const head = checkAfterCrash(path, run)
      const at = `${Math.round(fraction * 100)}%`
      t.diagnostic(`killed ${at} into transaction 3: ${run.committed} reported, head ${head}`)
    }
    assert.equal(children.size, 0)
  })
})
