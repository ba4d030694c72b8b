#!/usr/bin/env node
// Builds native/patina_deadline.c, the SQLite extension that bounds write transactions
// (`[perf] sql_tx_timeout`), into native/build/. Run by this package's `install` script with the
// C compiler that builds better-sqlite3 (`$CC`, else `cc`), against better-sqlite3's own SQLite
// headers. Never fails the install: without a compiler the agent starts with a warning and
// write transactions have no deadline (metric patina_sql_deadline_enabled 0).
import { spawnSync } from 'node:child_process'
import { mkdirSync, renameSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const native = join(dirname(fileURLToPath(import.meta.url)), '..', 'native')
const suffix = process.platform === 'darwin' ? '.dylib' : '.so'
const out = join(native, 'build', `patina_deadline${suffix}`)

function warn(why) {
  console.warn(
    `patina: the statement-deadline extension was not built (${why}). The agent will run write ` +
      'transactions without [perf] sql_tx_timeout. To fix: install a C compiler (e.g. ' +
      '`apt-get install build-essential`), then run `npm rebuild patina` ' +
      '(or `node packages/agent/scripts/build-native.mjs`).',
  )
}

function build() {
  if (process.platform === 'win32') return warn('not supported on Windows')
  let include
  try {
    const require = createRequire(import.meta.url)
    include = join(dirname(require.resolve('better-sqlite3/package.json')), 'deps', 'sqlite3')
  } catch (err) {
    return warn(`better-sqlite3 not found: ${err instanceof Error ? err.message : String(err)}`)
  }
  const cc = process.env.CC || 'cc'
  const tmp = `${out}.${process.pid}.tmp`
  mkdirSync(dirname(out), { recursive: true })
  const args = ['-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-I', include]
  args.push(join(native, 'patina_deadline.c'), '-o', tmp, '-pthread')
  const run = spawnSync(cc, args, { stdio: ['ignore', 'inherit', 'pipe'], encoding: 'utf8' })
  if (run.error !== undefined || run.status !== 0) {
    rmSync(tmp, { force: true })
    const detail = run.error?.message ?? (run.stderr.trim() || `exit ${run.status}`)
    return warn(`${cc} failed: ${detail}`)
  }
  if (run.stderr.trim() !== '') process.stderr.write(run.stderr)
  renameSync(tmp, out)
}

build()
