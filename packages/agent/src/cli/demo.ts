/**
 * `patina demo`: three replicas in one process write concurrently to the example schema, then
 * exchange what each lacks until they agree. A tour of the engine until the agent exists.
 */
import { mkdirSync, readFileSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Command } from 'commander'
import { missingChangesets } from '../crdt/pull.ts'
import { Replica, siteIdHex } from '../crdt/replica.ts'

const EXAMPLE_SCHEMA = fileURLToPath(new URL('../../schema/example.sql', import.meta.url))

export function demoCommand(): Command {
  return new Command('demo')
    .description('run three replicas in one process and show them converge')
    .option('--dir <path>', 'where to keep the demo databases', '.patina/demo')
    .action((opts: { dir: string }) => {
      runDemo(resolve(opts.dir))
    })
}

function runDemo(dir: string): void {
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  const schema = [{ path: EXAMPLE_SCHEMA, sql: readFileSync(EXAMPLE_SCHEMA, 'utf8') }]
  const names = ['ams', 'iad', 'syd']
  const replicas = names.map((name) => {
    const r = Replica.open(join(dir, `${name}.db`))
    r.applySchema(schema)
    return r
  })
  const say = (line: string): void => {
    process.stdout.write(`${line}\n`)
  }
  say(`patina demo: 3 replicas in ${dir}`)
  replicas.forEach((r, i) => {
    say(`  ${names[i] ?? ''}: actor ${siteIdHex(r.siteId)}`)
  })

  // Concurrent writes: every replica places machines, and two of them change the same one.
  replicas.forEach((r, i) => {
    const host = names[i] ?? 'host'
    const { version } = r.transaction([
      { sql: 'INSERT INTO hosts (id, region) VALUES (?, ?)', params: [`${host}-1`, host] },
      {
        sql: 'INSERT INTO machines (id, host_id, app, state, cpus) VALUES (?, ?, ?, ?, ?)',
        params: [`m-${host}`, `${host}-1`, 'web', 'started', BigInt(i + 1)],
      },
      {
        sql: 'INSERT INTO services (machine_id, port) VALUES (?, ?)',
        params: [`m-${host}`, 8080n],
      },
    ])
    say(`  ${host}: wrote version ${version ?? 'none'}`)
  })
  let rounds = exchange(replicas)
  // Conflicting writes on a shared row: two replicas set the same cell, a third deletes a row.
  replicas[0]?.transaction([{ sql: "UPDATE machines SET state = 'stopped' WHERE id = 'm-iad'" }])
  replicas[1]?.transaction([{ sql: "UPDATE machines SET state = 'replacing' WHERE id = 'm-iad'" }])
  replicas[2]?.transaction([{ sql: "DELETE FROM services WHERE machine_id = 'm-ams'" }])
  say('  ams sets m-iad stopped, iad sets it replacing, syd deletes the service of m-ams')
  rounds += exchange(replicas)
  say(`  exchanged changes in ${rounds} round(s); every replica now reads:`)
  const rows = replicas.map((r) =>
    JSON.stringify(
      r.query('SELECT id, host_id, state, cpus FROM machines ORDER BY id'),
      (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v),
    ),
  )
  for (const row of replicas[0]?.query(
    'SELECT m.id, m.host_id, m.state, count(s.port) AS services FROM machines m ' +
      'LEFT JOIN services s ON s.machine_id = m.id GROUP BY m.id ORDER BY m.id',
  ) ?? []) {
    say(
      `    ${String(row.id)} on ${String(row.host_id)}: ${String(row.state)}, ${String(row.services)} service(s)`,
    )
  }
  const agree = rows.every((r) => r === rows[0])
  say(agree ? '  all 3 replicas hold identical rows.' : '  replicas disagree (this is a bug).')
  for (const r of replicas) r.close()
  if (!agree) process.exitCode = 1
}

/** Pulls what each replica lacks from each other one until nothing moves; returns the rounds. */
function exchange(replicas: readonly Replica[]): number {
  for (let round = 0; ; round++) {
    let moved = 0
    for (const from of replicas) {
      for (const to of replicas) {
        if (from === to) continue
        const missing = missingChangesets(from, to)
        if (missing.length > 0) to.apply(missing)
        moved += missing.length
      }
    }
    if (moved === 0) return round
  }
}
