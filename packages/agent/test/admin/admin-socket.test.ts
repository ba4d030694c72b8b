/**
 * Goal: one agent per admin socket: a start on the path of a live admin socket is refused with
 * an error naming the path and the first server still answers; a socket file left by a process
 * that died is replaced; a path that is not a socket is refused and left alone; and a second
 * `patina agent` with the same `[admin] path` exits non-zero saying so while the first keeps
 * serving its API and its admin socket.
 *
 * Method: the servers of the first three tests run in this process in a temporary directory;
 * the stale socket comes from a child node process that listens on the path and exits without
 * closing (the kernel leaves the file, nobody listens on it). The last test builds the bin and
 * starts two real agents with the e2e helpers (API and gossip ports free a moment before); the
 * first is stopped by its PID in `after`.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import type { Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { adminRequest, startAdminServer } from '../../src/admin/admin-server.ts'
import { AdminError } from '../../src/admin/errors.ts'
import {
  writeAgent,
  buildAgent,
  runPatina,
  startAgent,
  stopAgent,
  type AgentProcess,
} from '../e2e/agents.ts'
import { freePorts } from '../e2e/ports.ts'

const REQUEST_TIMEOUT_MS = 5_000

let dir = ''
const servers: Server[] = []
const agents: AgentProcess[] = []

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => {
      resolve()
    })
  })
}

/** A server answering `{"cmd": "who"}` with its name. */
async function named(path: string, name: string): Promise<Server> {
  const server = await startAdminServer(path, (request) =>
    Promise.resolve(request.cmd === 'who' ? { ok: true, name } : { ok: false }),
  )
  servers.push(server)
  return server
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'patina-admin-'))
})

after(async () => {
  for (const s of servers) if (s.listening) await close(s)
  for (const a of agents) await stopAgent(a, 'SIGKILL').catch(() => undefined)
  if (dir !== '') rmSync(dir, { recursive: true, force: true })
})

describe('admin - one agent per admin socket', () => {
  it('admin - a live admin socket is not taken over', async () => {
    const path = join(dir, 'live.sock')
    await named(path, 'first')
    await assert.rejects(named(path, 'second'), (err: unknown) => {
      assert.ok(err instanceof AdminError, String(err))
      assert.equal(err.code, 'IN_USE')
      assert.equal(err.message, `another agent is running on admin socket ${path}`)
      return true
    })
    assert.deepEqual(await adminRequest(path, { cmd: 'who' }, REQUEST_TIMEOUT_MS), {
      ok: true,
      name: 'first',
    })
  })

  it('admin - a stale socket file is replaced', async () => {
    const path = join(dir, 'stale.sock')
    // Listens, then exits without closing: the socket file stays, nobody listens on it.
    execFileSync(process.execPath, [
      '-e',
      "require('node:net').createServer().listen(process.argv[1], () => process.exit(0))",
      path,
    ])
    assert.ok(lstatSync(path).isSocket(), 'the dead process left its socket file')
    await named(path, 'new')
    assert.deepEqual(await adminRequest(path, { cmd: 'who' }, REQUEST_TIMEOUT_MS), {
      ok: true,
      name: 'new',
    })
  })

  it('admin - a path that is not a socket is refused and left alone', async () => {
    const path = join(dir, 'not-a-socket')
    writeFileSync(path, 'keep me\n')
    await assert.rejects(named(path, 'x'), (err: unknown) => {
      assert.ok(err instanceof AdminError, String(err))
      assert.equal(err.code, 'NOT_A_SOCKET')
      assert.ok(err.message.includes(path), err.message)
      return true
    })
    assert.equal(readFileSync(path, 'utf8'), 'keep me\n')
  })

  it('admin - a second patina agent on the same admin socket exits non-zero; the first serves on', async () => {
    buildAgent()
    const sock = join(dir, 'agents.sock')
    const ports = await freePorts(4)
    for (const [i, name] of ['first', 'second'].entries()) {
      const apiPort = ports[2 * i] ?? 0
      const gossipPort = ports[2 * i + 1] ?? 0
      agents.push(
        writeAgent(dir, {
          name,
          apiPort,
          gossipPort,
          bootstrap: [],
          extra: ['[admin]', `path = ${JSON.stringify(sock)}`],
        }),
      )
    }
    const [first, second] = agents
    assert.ok(first !== undefined && second !== undefined)
    await startAgent(first)

    const r = await runPatina(dir, ['agent', '-c', second.cfg])
    assert.equal(r.signal, null, r.stderr)
    assert.notEqual(r.code, 0, r.stdout)
    assert.ok(
      r.stderr.includes(`patina: another agent is running on admin socket ${sock}\n`),
      r.stderr,
    )
    assert.ok(!r.stdout.includes('API at'), r.stdout)

    assert.ok(existsSync(sock), 'the first agent keeps its socket file')
    const reply = await adminRequest(sock, { cmd: 'reload' }, REQUEST_TIMEOUT_MS)
    assert.equal(reply.ok, true, JSON.stringify(reply))
    const health = await fetch(`${first.api}/v1/health`, {
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    })
    assert.equal(health.status, 200, await health.text())
    assert.equal(first.child?.exitCode, null, first.output)
  })
})
