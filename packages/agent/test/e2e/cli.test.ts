/**
 * Goal: the built `patina` command works end to end as an operator uses it: `patina agent`
 * starts from a config file and serves the API; `exec`, `query` (table and --json) and `reload`
 * talk to it with -c before or after the subcommand; failures exit non-zero with one line on
 * stderr; a multi-second query streaming over HTTP stalls neither writes nor health checks;
 * SIGTERM stops the agent cleanly (exit code 0) and closes its port.
 *
 * Method: `npx tsc -b` first, so dist/ is what the bin runs. A temporary directory holds the
 * schema file and a config whose API port was free a moment before (a net server on port 0,
 * closed). The agent runs as a child process (`node packages/agent/bin/patina.js agent -c ...`,
 * started by agents.ts) until its stdout says `API at http://127.0.0.1:PORT`; each CLI call is
 * another child process (agents.ts' runPatina).
 * The long-query test records the order in which the three responses complete and asserts the
 * query finished last. The agent child is killed by its PID in `after` if a test left it alive.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  buildAgent,
  REPO_ROOT,
  runPatina,
  startAgent,
  stopAgent,
  type AgentProcess,
  type PatinaResult,
} from './agents.ts'
import { freePort } from './ports.ts'

const VERSION = (
  JSON.parse(readFileSync(join(REPO_ROOT, 'packages/agent/package.json'), 'utf8')) as {
    version: string
  }
).version
/** Rows the long query counts: about 3 s on this machine, comfortably over 2 s. */
const LONG_QUERY_ROWS = 20_000_000
const LONG_QUERY =
  `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${LONG_QUERY_ROWS}) ` +
  'SELECT count(*) FROM c'
const CLI_TIMEOUT_MS = 15_000
const STOP_TIMEOUT_MS = 10_000

const SCHEMA = 'CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT, x);\n'
const SCHEMA_WITH_W = 'CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT, x, w TEXT);\n'

let dir = ''
let cfg = ''
let schemaFile = ''
let base = ''
let agent: AgentProcess | null = null

/** Runs `patina ARGS` as a child process (cwd: the temp dir) and collects its output. */
function patina(...args: string[]): Promise<PatinaResult> {
  return runPatina(dir, args, CLI_TIMEOUT_MS)
}

/** Runs a command that must succeed; returns its stdout. */
async function ok(...args: string[]): Promise<string> {
  const r = await patina(...args)
  assert.equal(r.code, 0, `patina ${args.join(' ')} failed: ${r.stderr}${r.stdout}`)
  return r.stdout
}

async function postJson(path: string, body: unknown): Promise<Response> {
  return fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
}

before(async () => {
  buildAgent()
  dir = mkdtempSync(join(tmpdir(), 'patina-e2e-'))
  schemaFile = join(dir, 'schema.sql')
  writeFileSync(schemaFile, SCHEMA)
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
      '',
    ].join('\n'),
  )
  agent = { name: 'the agent', cfg, api: base, gossipPort: 0, child: null, output: '' }
  await startAgent(agent)
})

after(async () => {
  if (agent !== null) await stopAgent(agent, 'SIGKILL', STOP_TIMEOUT_MS).catch(() => undefined)
  if (dir !== '') rmSync(dir, { recursive: true, force: true })
})

describe('e2e - the patina command', () => {
  it('e2e - --version prints the package version', async () => {
    assert.equal(await ok('--version'), `${VERSION}\n`)
  })

  it('e2e - query --help describes the command', async () => {
    const out = await ok('query', '--help')
    assert.match(out, /Usage: patina query \[options\] <sql>/)
    assert.match(out, /--json/)
  })

  it('e2e - exec with -c before the command writes a row as version 1', async () => {
    const out = await ok(
      '-c',
      cfg,
      'exec',
      'INSERT INTO t (id, v) VALUES (?, ?)',
      '--param',
      '1',
      '--param',
      'hello',
    )
    assert.equal(out, '1 row affected, version 1\n')
    const metrics = await (await fetch(`${base}/metrics`)).text()
    assert.match(metrics, /^patina_db_version 1$/m)
    assert.match(metrics, /^patina_http_requests_total\{[^}]*status="200"\} \d+$/m)
  })

  it('e2e - query with -c after the command prints a readable table', async () => {
    const out = await ok('query', 'SELECT id, v FROM t ORDER BY id', '-c', cfg)
    const lines = out.trimEnd().split('\n')
    assert.match(lines[0] ?? '', /^id\s+v$/)
    assert.match(lines[1] ?? '', /^-+\s+-+$/)
    assert.match(lines[2] ?? '', /^1\s+hello$/)
    assert.equal(lines.at(-1), '(1 row)')
    assert.equal(lines.length, 4)
  })

  it('e2e - query --json prints one JSON object per row, values typed', async () => {
    const out = await ok('-c', cfg, 'query', '--json', 'SELECT id, v, 2.5 AS r, NULL AS n FROM t')
    const lines = out.trimEnd().split('\n')
    assert.equal(lines.length, 1, out)
    assert.deepEqual(JSON.parse(lines[0] ?? ''), { id: 1, v: 'hello', r: 2.5, n: null })
  })

  it('e2e - exec --param keeps integers beyond 2^53 and reals exact', async () => {
    assert.equal(
      await ok(
        '-c',
        cfg,
        'exec',
        'INSERT INTO t (id, v, x) VALUES (?, ?, ?)',
        '--param',
        '2',
        '--param',
        'big',
        '--param',
        '9007199254740993',
      ),
      '1 row affected, version 2\n',
    )
    await ok('-c', cfg, 'exec', 'INSERT INTO t (id, x) VALUES (3, ?)', '--param', '1.0')
    const res = await postJson('/v1/queries', 'SELECT id, x, typeof(x) FROM t WHERE id IN (2, 3)')
    const text = await res.text()
    assert.ok(text.includes('{"row":[1,[2,9007199254740993,"integer"]]}'), text)
    assert.ok(text.includes('{"row":[2,[3,1.0,"real"]]}'), text)
  })

  it('e2e - reload applies a new nullable column from the schema file', async () => {
    writeFileSync(schemaFile, SCHEMA_WITH_W)
    const out = await ok('reload', '-c', cfg)
    assert.match(out, /^schema reloaded: /)
    assert.match(out, /"newColumns":\["t\.w"\]/)
    const before = await ok('-c', cfg, 'query', 'SELECT id, w FROM t WHERE id = 1')
    assert.match(before, /^1\s+NULL$/m)
    await ok('-c', cfg, 'exec', "UPDATE t SET w = 'new' WHERE id = 1")
    const afterUpdate = await ok('-c', cfg, 'query', 'SELECT id, w FROM t WHERE id = 1')
    assert.match(afterUpdate, /^id\s+w$/m)
    assert.match(afterUpdate, /^1\s+new$/m)
  })

  it('e2e - a failing command exits non-zero with a one-line error on stderr', async () => {
    for (const args of [
      ['-c', cfg, 'query', 'SELEC nope'],
      ['-c', cfg, 'exec', 'INSERT INTO nope (id) VALUES (1)'],
      ['exec', 'INSERT INTO t (id) VALUES (1)', '-c', cfg],
    ]) {
      const r = await patina(...args)
      assert.notEqual(r.code, 0, `${args.join(' ')}: ${r.stdout}`)
      assert.equal(r.stdout, '')
      assert.match(r.stderr, /^patina: [^\n]+\n$/, r.stderr)
    }
    const syntax = await patina('-c', cfg, 'query', 'SELEC nope')
    assert.match(syntax.stderr, /near "SELEC": syntax error/)
    const dup = await patina('exec', 'INSERT INTO t (id) VALUES (1)', '-c', cfg)
    assert.match(dup.stderr, /UNIQUE constraint failed: t\.id/)
  })

  it('e2e - writes and health complete while a long query streams', async () => {
    const order: string[] = []
    const query = await postJson('/v1/queries', LONG_QUERY)
    assert.equal(query.status, 200)
    // The headers are here: the reader has started the query. Now the others are sent.
    const queryDone = query.text().then((text) => {
      order.push('query')
      return text
    })
    const txDone = postJson('/v1/transactions', [
      "INSERT INTO t (id, v) VALUES (10, 'during')",
    ]).then(async (res) => {
      const text = await res.text()
      order.push('transaction')
      return { status: res.status, text }
    })
    const healthDone = fetch(`${base}/v1/health`).then(async (res) => {
      const text = await res.text()
      order.push('health')
      return { status: res.status, text }
    })
    const [queryText, txAnswer, healthAnswer] = await Promise.all([queryDone, txDone, healthDone])
    assert.equal(txAnswer.status, 200, txAnswer.text)
    assert.match(txAnswer.text, /"version":\d+/)
    assert.equal(healthAnswer.status, 200, healthAnswer.text)
    assert.ok(queryText.includes(`{"row":[1,[${LONG_QUERY_ROWS}]]}`), queryText)
    assert.equal(order.length, 3)
    assert.equal(order.at(-1), 'query', `completion order: ${order.join(', ')}`)
  })

  it('e2e - SIGTERM stops the agent with exit code 0 and closes the API', async () => {
    const child = agent?.child
    assert.ok(agent !== null && child?.pid !== undefined)
    await stopAgent(agent, 'SIGTERM', STOP_TIMEOUT_MS)
    assert.equal(child.signalCode, null, agent.output)
    assert.equal(child.exitCode, 0, agent.output)
    await assert.rejects(fetch(`${base}/v1/health`), (err: unknown) => {
      const cause = (err as { cause?: { code?: string } }).cause
      assert.equal(cause?.code, 'ECONNREFUSED')
      return true
    })
    const r = await patina('-c', cfg, 'query', 'SELECT 1')
    assert.equal(r.code, 1)
    assert.match(r.stderr, /^patina: cannot reach the agent at [^\n]+\n$/)
  })
})
