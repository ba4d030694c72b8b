/**
 * Goal: SIGTERM ends a real `patina agent` process within the shutdown grace (SHUTDOWN_GRACE_MS)
 * whatever connections its clients keep open, after it served a subscription with rows.
 *
 * Method: the built bin (buildAgent), an agent child process on free ports (agents.ts). A row
 * goes in through `/v1/transactions`; `POST /v1/subscriptions` with `"SELECT * FROM t"` is read
 * up to its `eoq` line and aborted, as a client does that read the first lines. Node's fetch then
 * holds a spare connection to the agent on which it has sent nothing yet (it opens one when a
 * stream answered `connection: close` goes away); other HTTP clients and browsers keep such
 * connections far longer than fetch's 4 s, so the test holds one itself, a raw TCP socket. Then
 * SIGTERM (by PID): the process must log "agent stopped" and exit 0, within the grace when a
 * connection has sent nothing (it holds no request), and by the grace plus the time to stop when
 * a connection holds a request cut short (only the grace ends it).
 */
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import type { ReadableStreamReadResult } from 'node:stream/web'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { LineSplitter } from '@patina/protocol'
import { SHUTDOWN_GRACE_MS } from '../../src/config/defaults.ts'
import { writeAgent, buildAgent, startAgent, waitExit, type AgentProcess } from './agents.ts'
import { freePorts } from './ports.ts'

/** Time the process takes after the grace: stopping the rest of the agent, then exiting. */
const STOP_AFTER_GRACE_MS = 4000

const dirs: string[] = []
const agents: AgentProcess[] = []
const sockets: Socket[] = []

before(() => {
  buildAgent()
})

after(() => {
  for (const s of sockets) s.destroy()
  for (const n of agents) {
    if (n.child?.exitCode === null && n.child.signalCode === null) n.child.kill('SIGKILL')
  }
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

async function newAgent(name: string): Promise<AgentProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'patina-e2e-shutdown-'))
  dirs.push(dir)
  mkdirSync(join(dir, name))
  writeFileSync(
    join(dir, 'schema.sql'),
    'CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT);\n',
  )
  const [apiPort, gossipPort] = (await freePorts(2)) as [number, number]
  const n: AgentProcess = writeAgent(
    dir,
    {
      name,
      apiPort,
      gossipPort,
      bootstrap: [],
      schema: true,
      extra: ['[subscriptions]', 'batch_ms = 1'],
    },
    'patina.toml',
  )
  agents.push(n)
  await startAgent(n)
  return n
}

async function insert(n: AgentProcess, id: number): Promise<void> {
  const res = await fetch(`${n.api}/v1/transactions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify([`INSERT INTO t (id, v) VALUES (${id}, 'v${id}')`]),
  })
  assert.equal(res.status, 200, await res.text())
}

/** Opens `SELECT * FROM t`, reads it up to its eoq line; returns the lines and the abort. */
async function subscribe(n: AgentProcess): Promise<{ lines: string[]; abort: () => void }> {
  const abort = new AbortController()
  const res = await fetch(`${n.api}/v1/subscriptions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify('SELECT * FROM t'),
    signal: abort.signal,
  })
  assert.equal(res.status, 200)
  assert.ok(res.body !== null)
  const reader = res.body.getReader()
  const splitter = new LineSplitter()
  const lines: string[] = []
  while (!lines.some((l) => l.startsWith('{"eoq":'))) {
    const chunk: ReadableStreamReadResult<Uint8Array> = await reader.read()
    assert.equal(chunk.done, false, `the stream ended before eoq: ${lines.join('\n')}`)
    lines.push(...splitter.push(chunk.value))
  }
  return {
    lines,
    abort: () => {
      abort.abort()
    },
  }
}

/** A TCP connection to the API that has sent `bytes` (nothing: an HTTP client's spare one). */
async function holdConnection(n: AgentProcess, bytes = ''): Promise<Socket> {
  const url = new URL(n.api)
  const socket = connect(Number(url.port), url.hostname)
  sockets.push(socket)
  socket.on('error', () => undefined) // the agent closing it is the point
  await new Promise<void>((resolve) => socket.once('connect', resolve))
  if (bytes !== '') socket.write(bytes)
  // The agent has accepted it (and read what was sent) before the test goes on.
  await new Promise((resolve) => setTimeout(resolve, 100))
  return socket
}

/** Sends SIGTERM; resolves with the ms until the exit, failing after `limitMs`. */
async function sigterm(n: AgentProcess, limitMs: number): Promise<number> {
  const child = n.child
  assert.ok(child?.pid !== undefined)
  const started = performance.now()
  process.kill(child.pid, 'SIGTERM')
  try {
    await waitExit(child, limitMs)
  } catch (err) {
    child.kill('SIGKILL')
    assert.fail(`${String(err)} after SIGTERM; agent output:\n${n.output}`)
  }
  assert.equal(child.exitCode, 0, n.output)
  assert.match(n.output, /"msg":"agent stopped"/)
  return performance.now() - started
}

describe('e2e - agent shutdown', () => {
  it('e2e - SIGTERM exits within the grace after a subscription with rows was read and aborted', async () => {
    const n = await newAgent('a')
    await insert(n, 1)
    const sub = await subscribe(n)
    assert.deepEqual(sub.lines.slice(0, 2), ['{"columns":["id","v"]}', '{"row":[1,[1,"v1"]]}'])
    sub.abort()
    const spare = await holdConnection(n)
    await sigterm(n, SHUTDOWN_GRACE_MS)
    assert.ok(spare.destroyed || spare.readableEnded, 'the agent closed the spare connection')
  })

  it('e2e - SIGTERM exits within the grace with a subscription stream still open', async () => {
    const n = await newAgent('b')
    await insert(n, 1)
    const sub = await subscribe(n)
    await holdConnection(n)
    try {
      await sigterm(n, SHUTDOWN_GRACE_MS)
    } finally {
      sub.abort()
    }
  })

  it('e2e - SIGTERM exits once the grace is over when a request was cut short', async () => {
    const n = await newAgent('c')
    await insert(n, 1)
    const sub = await subscribe(n)
    sub.abort()
    // Headers never finished: a request in flight, that only the end of the grace cuts.
    await holdConnection(n, 'POST /v1/subscriptions HTTP/1.1\r\nhost: x\r\n')
    const ms = await sigterm(n, SHUTDOWN_GRACE_MS + STOP_AFTER_GRACE_MS)
    assert.ok(ms >= SHUTDOWN_GRACE_MS - 1000, `the request had its grace (${Math.round(ms)} ms)`)
  })
})
