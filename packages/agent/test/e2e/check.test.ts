/**
 * `patina check -c config.toml`: checks the database without starting an agent.
 *
 * Method: a Replica writes the file (and stays open, as a running agent would, for the first
 * run); each check is a child process running the CLI from source (`node --import tsx
 * src/cli/main.ts check -c ...`, no build needed). A clean file exits 0 with one `ok:` line; a
 * file whose capture trigger was dropped from a plain connection exits 1 and names the trigger.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import Database from 'better-sqlite3'
import { Replica } from '../../src/crdt/replica.ts'
import { REPO_ROOT } from './agents.ts'

const MAIN = join(REPO_ROOT, 'packages/agent/src/cli/main.ts')
const RUN_TIMEOUT_MS = 20_000

const dir = mkdtempSync(join(tmpdir(), 'patina-check-'))
const cfg = join(dir, 'patina.toml')
const dbPath = join(dir, 'state.db')
writeFileSync(cfg, ['[db]', 'path = "state.db"', '[gossip]', 'addr = "127.0.0.1:0"', ''].join('\n'))

after(() => {
  rmSync(dir, { recursive: true, force: true })
})

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

function check(...args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'check', '-c', cfg, ...args], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c))
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
    const timer = setTimeout(() => {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL')
    }, RUN_TIMEOUT_MS)
    child.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

describe('check - patina check', () => {
  it('check - a clean database exits 0 with one summary line, while it is open and after', async () => {
    const r = Replica.open(dbPath)
    try {
      r.applySchema([
        { path: 's.sql', sql: 'CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT);' },
      ])
      r.transaction([{ sql: "INSERT INTO t (id, v) VALUES (1, 'one')" }])
      const open = await check()
      assert.equal(open.code, 0, open.stdout + open.stderr)
      assert.match(open.stdout, /^ok: .*state\.db: SQLite quick_check ok, 1 replicated table\(s\)/)
    } finally {
      r.close()
    }
    const stopped = await check('--full')
    assert.equal(stopped.code, 0, stopped.stdout + stopped.stderr)
    assert.match(stopped.stdout, /^ok: .*SQLite integrity_check ok/)
    assert.equal(stopped.stdout.trim().split('\n').length, 1)
  })

  it('check - a dropped trigger exits 1 and names it, with how to recover', async () => {
    const db = new Database(dbPath)
    db.exec('DROP TRIGGER "t__patina_ins"')
    db.close()
    const run = await check()
    assert.equal(run.code, 1, run.stdout + run.stderr)
    assert.match(run.stdout, /^problem: trigger "t__patina_ins" on table "t" is missing/m)
    assert.match(run.stdout, /restore the file from a backup/)
  })
})
