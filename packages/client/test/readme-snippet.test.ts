/**
 * Goal: the README's client quick start, pasted as it is, runs as plain JavaScript on this
 * Node (20: no `await using`, no type arguments) against a real agent and exits 0, and the same
 * text type-checks as TypeScript.
 *
 * Method: the code block between the README's `client quick start` markers is written to a
 * temporary directory as snippet.mjs (and snippet.mts), with its agent URLs replaced by one real
 * agent's (helpers/agent.ts, on the repository's example schema, which has the `machines`
 * table the snippet writes). The directory's node_modules is a link to the repository root's,
 * so `import '@patina/client'` resolves exactly as from the root after `npm ci` (the workspace
 * link to packages/client, its built dist/). Then `node snippet.mjs` and `tsc --noEmit` run in
 * child processes.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import {
  existsSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { REPO_ROOT } from '../../agent/test/e2e/agents.ts'
import { startAgent, type Agent } from './helpers/agent.ts'

const BEGIN = '<!-- client quick start: begin -->'
const END = '<!-- client quick start: end -->'
/** The URLs the snippet shows (loopback agents); each is replaced by the test agent's. */
const SNIPPET_URL = /http:\/\/127\.0\.0\.1:\d+/g
/** A run of the snippet or of tsc still going after this is killed (and the test fails). */
const CHILD_TIMEOUT_MS = 30_000

/** The one fenced code block between the quick start markers. */
function quickStart(): string {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8')
  const begin = readme.indexOf(BEGIN)
  const end = readme.indexOf(END)
  assert.ok(begin >= 0 && end > begin, 'README.md has the client quick start markers in order')
  const blocks = [...readme.slice(begin, end).matchAll(/^```[a-z]*\n([\s\S]*?)^```$/gm)]
  assert.equal(blocks.length, 1, 'one code block in the client quick start')
  return blocks[0]?.[1] ?? ''
}

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

function run(args: string[], cwd: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      args,
      { cwd, timeout: CHILD_TIMEOUT_MS, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null
        resolve({ code, stdout, stderr })
      },
    )
  })
}

let agent: Agent
let dir: string
let snippet: string

before(async () => {
  const schema = readFileSync(join(REPO_ROOT, 'packages/agent/schema/example.sql'), 'utf8')
  agent = await startAgent('readme', schema)
  const code = quickStart()
  assert.match(code, /from '@patina\/client'/)
  assert.ok(code.match(SNIPPET_URL) !== null, 'the snippet names its agents by loopback URLs')
  snippet = code.replace(SNIPPET_URL, agent.url)
  dir = mkdtempSync(join(tmpdir(), 'patina-readme-'))
  const modules = join(REPO_ROOT, 'node_modules')
  assert.equal(
    realpathSync(join(modules, '@patina/client')),
    realpathSync(join(REPO_ROOT, 'packages/client')),
    'the root resolves @patina/client to the workspace package',
  )
  assert.ok(existsSync(join(REPO_ROOT, 'packages/client/dist/index.js')), 'the client is built')
  symlinkSync(modules, join(dir, 'node_modules'), 'dir')
})

after(async () => {
  rmSync(dir, { recursive: true, force: true })
  await agent.stop()
})

describe('client - README quick start', () => {
  it('client - the README quick start runs as plain JavaScript (.mjs) on this Node and exits 0', async () => {
    writeFileSync(join(dir, 'snippet.mjs'), snippet)
    const r = await run(['snippet.mjs'], dir)
    assert.equal(r.code, 0, `node snippet.mjs failed:\n${r.stderr}\n--- snippet:\n${snippet}`)
    assert.equal(r.stdout, 'm2 8\n')
  })

  it('client - the README quick start type-checks as TypeScript (strict)', async () => {
    writeFileSync(join(dir, 'snippet.mts'), snippet)
    const tsc = join(REPO_ROOT, 'node_modules/typescript/bin/tsc')
    const r = await run(
      [
        tsc,
        '--noEmit',
        '--strict',
        '--noUncheckedIndexedAccess',
        '--exactOptionalPropertyTypes',
        '--target',
        'es2022',
        '--module',
        'nodenext',
        '--types',
        'node',
        'snippet.mts',
      ],
      dir,
    )
    assert.equal(r.code, 0, `tsc snippet.mts failed:\n${r.stdout}${r.stderr}`)
  })
})
