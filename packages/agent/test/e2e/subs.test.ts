/**
 * Goal: subscriptions work end to end with the real `patina` binary: `patina subs SQL` prints
 * columns, rows, eoq and then one change line per write as it happens; `patina subs list`
 * shows the subscription; stopping the agent ends the stream with an error event (exit 1);
 * after a restart, `patina subs SQL --from N` prints exactly the changes after N under the
 * same subscription id, and `--id ID` re-attaches by id.
 *
 * Method: `npx tsc -b`, then an agent child process on a free port with a temporary config.
 * `patina subs` runs as a long-lived child whose stdout lines are collected; the test waits
 * for specific lines, then kills it (by PID). Writes go through `patina exec`. The agent is
 * stopped with SIGTERM (exit 0) and restarted on the same data directory.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { LineSplitter } from '@patina/protocol'
import {
  BIN,
  buildAgent,
  startAgent as start,
  stopAgent as stop,
  type AgentProcess,
} from './agents.ts'
import { freePort } from './ports.ts'

const WAIT_MS = 15_000
/** A stop waits this long for the exit: the agent gives in-flight requests up to 10 s. */
const STOP_TIMEOUT_MS = 30_000

let dir = ''
let cfg = ''
let base = ''
let agent: AgentProcess | null = null
const children = new Set<ChildProcess>()

interface Running {
  readonly child: ChildProcess
  readonly lines: string[]
  stderr: string
  waitFor(pred: (line: string) => boolean): Promise<string>
  exited: Promise<number | null>
}

function run(...args: string[]): Running {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.add(child)
  const lines: string[] = []
  const waiters: (() => void)[] = []
  const splitter = new LineSplitter()
  const r: Running = {
    child,
    lines,
    stderr: '',
    exited: new Promise((resolve) => {
      child.once('exit', (code) => {
        children.delete(child)
        resolve(code)
        for (const w of waiters.splice(0)) w()
      })
    }),
    async waitFor(pred) {
      const deadline = Date.now() + WAIT_MS
      for (;;) {
        const found = lines.find(pred)
        if (found !== undefined) return found
        if (child.exitCode !== null || Date.now() > deadline) {
          throw new Error(`line not seen; stdout:\n${lines.join('\n')}\nstderr:\n${r.stderr}`)
        }
        await new Promise<void>((resolve) => {
          waiters.push(resolve)
          setTimeout(resolve, 100)
        })
      }
    },
  }
  child.stdout.on('data', (chunk: Buffer) => {
    lines.push(...splitter.push(chunk))
    for (const w of waiters.splice(0)) w()
  })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (r.stderr += chunk))
  return r
}

async function ok(...args: string[]): Promise<string> {
  const r = run(...args)
  const code = await r.exited
  assert.equal(code, 0, `patina ${args.join(' ')}: ${r.stderr}`)
  return r.lines.join('\n')
}

async function startAgent(): Promise<void> {
  assert.ok(agent !== null)
  await start(agent)
}

async function stopAgent(): Promise<void> {
  const child = agent?.child
  assert.ok(agent !== null && child?.pid !== undefined)
  await stop(agent, 'SIGTERM', STOP_TIMEOUT_MS)
  assert.equal(child.exitCode, 0, agent.output)
}

before(async () => {
  buildAgent()
  dir = mkdtempSync(join(tmpdir(), 'patina-e2e-subs-'))
  writeFileSync(
    join(dir, 'schema.sql'),
    'CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT);\n',
  )
  const port = await freePort()
  base = `http://127.0.0.1:${port}`
  cfg = join(dir, 'patina.toml')
  writeFileSync(
    cfg,
    [
      '[db]',
      'path = "data/state.db"',
      'schema_paths = ["schema.sql"]',
      '[api]',
      `addr = "127.0.0.1:${port}"`,
      '[gossip]',
      'addr = "127.0.0.1:0"',
      '[subscriptions]',
      'batch_ms = 1',
      '',
    ].join('\n'),
  )
  agent = { name: 'the agent', cfg, api: base, gossipPort: 0, child: null, output: '' }
  await startAgent()
})

after(async () => {
  for (const child of [...children]) if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL')
  if (agent !== null) await stop(agent, 'SIGKILL', STOP_TIMEOUT_MS).catch(() => undefined)
  if (dir !== '') rmSync(dir, { recursive: true, force: true })
})

describe('e2e - patina subs', () => {
  it('e2e - subs prints events as they come; list shows it; --from resumes after a restart', async () => {
    await ok('-c', cfg, 'exec', "INSERT INTO t (id, v) VALUES (1, 'one')")
    const sql = 'SELECT id, v FROM t'
    const subs = run('-c', cfg, 'subs', sql)
    await subs.waitFor((l) => l.startsWith('{"eoq":'))
    assert.deepEqual(subs.lines.slice(0, 2), ['{"columns":["id","v"]}', '{"row":[1,[1,"one"]]}'])
    assert.match(subs.lines[2] ?? '', /^\{"eoq":\{"time":[^,]+,"change_id":0\}\}$/)
    const id = /subscription ([0-9a-f-]{36})/.exec(subs.stderr)?.[1]
    assert.ok(id !== undefined, subs.stderr)

    await ok('-c', cfg, 'exec', "INSERT INTO t (id, v) VALUES (2, 'two')")
    assert.equal(
      await subs.waitFor((l) => l.startsWith('{"change":')),
      '{"change":["insert",2,[2,"two"],1]}',
    )
    const list = await ok('-c', cfg, 'subs', 'list')
    assert.match(list, /^id\s+mode\s+listeners\s+change_id\s+rows\s+created\s+sql$/m)
    assert.ok(list.includes(id), list)
    assert.match(list, /incremental\s+1\s+1\s+2\s/)
    assert.match(list, /\(1 subscription\)$/)
    const json = JSON.parse(await ok('--api', base, 'subs', 'list', '--json')) as {
      id: string
      listeners: number
    }[]
    assert.deepEqual(
      json.map((s) => [s.id, s.listeners]),
      [[id, 1]],
    )

    // Stopping the agent ends the stream with an error event; the CLI exits 1 saying so.
    const subsExit = subs.exited
    await stopAgent()
    assert.equal(await subsExit, 1)
    assert.match(
      subs.lines.at(-1) ?? '',
      /^\{"error":"the agent is shutting down; resume with from=1","code":"AGENT_CLOSING"\}$/,
    )
    assert.match(subs.stderr, /patina: the agent is shutting down/)

    await startAgent()
    await ok('-c', cfg, 'exec', "UPDATE t SET v = 'uno' WHERE id = 1")
    const resumed = run('-c', cfg, 'subs', sql, '--from', '1')
    assert.equal(
      await resumed.waitFor((l) => l.startsWith('{"change":')),
      '{"change":["update",1,[1,"uno"],2]}',
    )
    assert.ok(resumed.stderr.includes(id), 'the restored subscription kept its id')
    const byId = run('-c', cfg, 'subs', '--id', id, '--from', '0', '--skip-rows')
    await byId.waitFor((l) => l.startsWith('{"eoq":'))
    assert.equal(byId.lines[0], '{"columns":["id","v"]}')
    for (const r of [resumed, byId]) {
      if (r.child.pid !== undefined) process.kill(r.child.pid, 'SIGTERM')
      await r.exited
    }
    const refused = run('-c', cfg, 'subs', 'SELECT random() FROM t')
    assert.equal(await refused.exited, 1)
    assert.match(refused.stderr, /^patina: 400: the query calls random\(\)/)
    await stopAgent()
  })
})
