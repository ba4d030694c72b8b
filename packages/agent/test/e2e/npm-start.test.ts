/**
 * Goal: `npm start` stops the way the README says: a SIGINT (or SIGTERM) to npm's PID alone
 * stops the agents in order ("agents stopped") and every process of it is gone within seconds;
 * and `patina dev` survives a second signal during its stop (one Ctrl-C under `npm start`
 * reaches it twice: from the terminal and forwarded by npm) and still stops in order.
 *
 * Method: `npm start -- --port 0 --gossip-port 0 --dir <tmp>` from the repository root (its
 * `tsc -b` is a no-op on a built tree), in a process group of its own so that what it started
 * can be killed if the test fails; it is signalled by npm's PID only. Everything it started is
 * gone when its stdout and stderr pipes close (each process holding them is gone): the child's
 * 'close' event. Before the fix npm's child was `sh -c "tsc -b && node ..."`, which waited on
 * node and never passed the signal on, so nothing stopped (SIGTERM killed sh and left node
 * running). The second test runs the built bin's `dev --nodes 2` directly (by PID: SIGTERM,
 * then SIGINT while it stops); before the fix the second signal killed it halfway.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { BIN, buildAgent, REPO_ROOT } from './agents.ts'

/** From spawn to every agent's "API at" line (npm's start-up plus a no-op `tsc -b`). */
const READY_TIMEOUT_MS = 30_000
/** From the signal to the last pipe closing: the leave linger (1 s) and the rest of the stop. */
const STOP_TIMEOUT_MS = 10_000

const dirs: string[] = []
const groups: ChildProcess[] = []

before(() => {
  buildAgent()
})

after(() => {
  // A test that failed may have left its process group behind: kill the groups we started.
  for (const child of groups) {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) continue
    try {
      process.kill(-child.pid, 'SIGKILL')
    } catch {
      // gone already
    }
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

interface Run {
  readonly child: ChildProcess
  output: string
  /** Resolves with the exit code and signal once every process holding the pipes is gone. */
  readonly closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

function run(command: string, args: readonly string[]): Run {
  const child = spawn(command, args, {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  groups.push(child)
  const r: Run = {
    child,
    output: '',
    closed: new Promise((resolve) => {
      child.once('close', (code, signal) => {
        resolve({ code, signal })
      })
    }),
  }
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (r.output += chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (r.output += chunk))
  return r
}

async function within<T>(what: string, ms: number, p: Promise<T>, r: Run): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`${what} not within ${ms} ms; output:\n${r.output.slice(-3000)}`))
    }, ms)
  })
  try {
    return await Promise.race([p, timeout])
  } finally {
    clearTimeout(timer)
  }
}

async function ready(r: Run, nodes: number): Promise<void> {
  const started = performance.now()
  while ((r.output.match(/patina dev: node-\d+ API at /g) ?? []).length < nodes) {
    if (r.child.exitCode !== null || r.child.signalCode !== null) {
      assert.fail(`exited before starting:\n${r.output.slice(-3000)}`)
    }
    if (performance.now() - started > READY_TIMEOUT_MS) {
      assert.fail(`not started within ${READY_TIMEOUT_MS} ms:\n${r.output.slice(-3000)}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'patina-npm-start-'))
  dirs.push(d)
  return d
}

describe('e2e - stopping npm start and patina dev', () => {
  it('e2e - SIGINT to the PID of `npm start` stops the three agents in order, and every process exits', async () => {
    const r = run('npm', ['start', '--', '--port', '0', '--gossip-port', '0', '--dir', tempDir()])
    await ready(r, 3)
    const pid = r.child.pid
    assert.ok(pid !== undefined)
    const signalledAt = performance.now()
    process.kill(pid, 'SIGINT')
    const { code } = await within('every process gone after SIGINT', STOP_TIMEOUT_MS, r.closed, r)
    const stopMs = performance.now() - signalledAt
    assert.match(r.output, /shutting down \{"signal":"SIGINT"\}/)
    assert.match(r.output, /agents stopped/)
    assert.equal(code, 0, r.output.slice(-3000))
    process.stdout.write(`npm start stopped ${Math.round(stopMs)} ms after SIGINT\n`)
  })

  it('e2e - patina dev stops in order when a second signal arrives while it stops', async () => {
    const r = run(process.execPath, [
      BIN,
      'dev',
      '--nodes',
      '2',
      '--port',
      '0',
      '--gossip-port',
      '0',
      '--dir',
      tempDir(),
    ])
    await ready(r, 2)
    const pid = r.child.pid
    assert.ok(pid !== undefined)
    process.kill(pid, 'SIGTERM')
    // Within the leave linger (1 s): the agents are stopping.
    await new Promise((resolve) => setTimeout(resolve, 200))
    process.kill(pid, 'SIGINT')
    const { code, signal } = await within('exit after two signals', STOP_TIMEOUT_MS, r.closed, r)
    assert.equal(signal, null, `killed by ${signal ?? ''}:\n${r.output.slice(-3000)}`)
    assert.equal(code, 0, r.output.slice(-3000))
    assert.match(r.output, /agents stopped/)
  })
})
