/**
 * Goal: an agent whose disk is full starts, warns once, serves reads, answers writes with 507
 * STORAGE_FULL and reports `storage_full` in /v1/health; once space is freed, writes work
 * again without a restart (src/store/storage-space.ts).
 *
 * Method: a real full filesystem: a 4 MiB tmpfs mounted on a directory the test made (needs
 * root; elsewhere the test is skipped and says why: SQLite's max_page_count would not show
 * what a full disk does, since the first failure is the -shm index SQLite creates at open).
 * An agent (main.ts startAgent, in process) writes a row and stops; a file of zeros fills the
 * filesystem to the last byte; a second agent starts on it. Unmounted in `finally`.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  writeFileSync,
  openSync,
  closeSync,
  writeSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { describe, it } from 'node:test'
import { pino } from 'pino'
import { parseConfig } from '../../src/config/load-config.ts'
import { startAgent, type Agent } from '../../src/main.ts'
import { RESERVE_FILE } from '../../src/store/storage-space.ts'

const SIZE = '4m'
const WRITES_MAX = 200

/** Mounts a tmpfs on `dir`; returns why it cannot be done, or null. */
function mountTmpfs(dir: string): string | null {
  if (process.getuid?.() !== 0) return 'not running as root'
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${SIZE}`, 'tmpfs', dir], { stdio: 'pipe' })
    return null
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim()
    return stderr !== undefined && stderr !== '' ? stderr : String(err)
  }
}

/** Writes zeros to `file` until the filesystem refuses (ENOSPC). Returns the bytes written. */
function fill(file: string): number {
  const fd = openSync(file, 'w')
  let written = 0
  try {
    for (const size of [256 * 1024, 4096, 512, 1]) {
      const chunk = Buffer.alloc(size)
      for (let i = 0; i < (4 * 1024 * 1024) / size + 1; i++) {
        try {
          written += writeSync(fd, chunk)
        } catch (err) {
          if ((err as { code?: string }).code !== 'ENOSPC') throw err
          break
        }
      }
    }
  } finally {
    closeSync(fd)
  }
  return written
}

function start(dir: string, lines: string[] | null): Promise<Agent> {
  const toml = [
    '[db]',
    'path = "fs/data/state.db"',
    'schema_paths = ["schema.sql"]',
    'reader_threads = 1',
    '[api]',
    'addr = "127.0.0.1:0"',
    '[gossip]',
    'addr = "127.0.0.1:0"',
    '',
  ].join('\n')
  const { config } = parseConfig(toml, dir, 'test config')
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines?.push(
        ...chunk
          .toString('utf8')
          .split('\n')
          .filter((l) => l !== ''),
      )
      done()
    },
  })
  return startAgent(config, pino({ level: lines === null ? 'silent' : 'warn' }, sink))
}

async function post(
  agent: Agent,
  url: string,
  body: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const app = agent.apis[0]
  assert.ok(app !== undefined)
  const res = await app.inject({
    method: 'POST',
    url,
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify(body),
  })
  const text = res.body
  const first = text.split('\n')[0] ?? ''
  return {
    status: res.statusCode,
    json: (first === '' ? {} : JSON.parse(first)) as Record<string, unknown>,
  }
}

async function health(agent: Agent): Promise<{ status: number; body: string }> {
  const app = agent.apis[0]
  assert.ok(app !== undefined)
  const res = await app.inject({ method: 'GET', url: '/v1/health' })
  return { status: res.statusCode, body: res.body }
}

describe('api - full disk', () => {
  it('api - on a full disk the agent starts, serves reads, answers writes 507 and reports storage_full; freed space makes writes work again', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'patina-full-'))
    const mnt = join(dir, 'fs')
    mkdirSync(mnt)
    const why = mountTmpfs(mnt)
    if (why !== null) {
      rmSync(dir, { recursive: true, force: true })
      t.diagnostic(`skipped: cannot mount a ${SIZE} tmpfs here (${why}); needs root`)
      t.skip(`cannot mount a tmpfs: ${why}`)
      return
    }
    let agent: Agent | null = null
    try {
      writeFileSync(
        join(dir, 'schema.sql'),
        'CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT);\n',
      )
      agent = await start(dir, null)
      assert.equal(
        (await post(agent, '/v1/transactions', [["INSERT INTO t VALUES (1, 'one')"]])).status,
        200,
      )
      await agent.stop()
      agent = null
      assert.ok(
        existsSync(join(mnt, 'data', RESERVE_FILE)),
        'the reserve is created while there is room',
      )

      const filler = join(mnt, 'fill')
      assert.ok(fill(filler) > 0)

      const lines: string[] = []
      agent = await start(dir, lines)
      const warnings = lines.filter((l) => l.includes('storage full'))
      assert.equal(warnings.length, 1, lines.join('\n'))
      assert.match(warnings[0] as string, /released the \d+-byte patina\.reserve to start/)

      const read = await post(agent, '/v1/queries', 'SELECT v FROM t')
      assert.equal(read.status, 200)
      const h = await health(agent)
      assert.equal(h.status, 503)
      assert.match(
        h.body,
        /storage_full: \d+ bytes free on the filesystem of .*writes fail with 507/,
      )

      let refused: { status: number; json: Record<string, unknown> } | null = null
      for (let i = 0; i < WRITES_MAX && refused === null; i++) {
        const w = await post(agent, '/v1/transactions', [
          [`INSERT INTO t VALUES (${i + 10}, '${'x'.repeat(200)}')`],
        ])
        if (w.status !== 200) refused = w
      }
      assert.ok(refused !== null, `no write was refused in ${WRITES_MAX}`)
      assert.equal(refused.status, 507)
      assert.equal(refused.json.code, 'STORAGE_FULL')
      // Reads still work after the refusals.
      assert.equal((await post(agent, '/v1/queries', 'SELECT count(*) FROM t')).status, 200)

      rmSync(filler)
      const again = await post(agent, '/v1/transactions', [
        ["INSERT INTO t VALUES (1000, 'after')"],
      ])
      assert.equal(again.status, 200, JSON.stringify(again.json))
      assert.equal((await health(agent)).status, 200)
    } finally {
      await agent?.stop()
      try {
        execFileSync('umount', [mnt], { stdio: 'pipe' })
      } catch {
        // Still busy (e.g. a failed start left a file open): detach it, it goes once closed.
        execFileSync('umount', ['-l', mnt], { stdio: 'pipe' })
      }
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
