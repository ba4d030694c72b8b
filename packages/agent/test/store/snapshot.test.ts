/**
 * Goal: `patina backup` / `patina restore` (crdt/snapshot.ts) make consistent, generic
 * snapshots while writes go on, install them with the node's own actor id (or a fresh one),
 * and refuse corrupt, truncated, foreign or other-cluster files without touching the data
 * directory.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { gzipSync } from 'node:zlib'
import Database from 'better-sqlite3'
import { Replica } from '../../src/crdt/replica.ts'
import {
  createSnapshot,
  MANIFEST_TABLE,
  restoreSnapshot,
  SnapshotError,
  verifySnapshot,
} from '../../src/crdt/snapshot.ts'
import { actorIdHex } from '../../src/runtime/actor-id.ts'

const SCHEMA = [
  {
    path: 'schema.sql',
    sql:
      'CREATE TABLE counter (id INTEGER NOT NULL PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0);\n' +
      'CREATE TABLE items (id INTEGER NOT NULL PRIMARY KEY, pad TEXT);',
  },
]
const CLUSTER = 7
const dir = mkdtempSync(join(tmpdir(), 'patina-snapshot-'))
after(() => {
  rmSync(dir, { recursive: true, force: true })
})

function id(byte: number): Uint8Array {
  const a = new Uint8Array(16)
  a[0] = byte
  a[15] = 9
  return a
}

/** A replica with `rows` committed items, one version per write after the counter's. */
function seeded(name: string, byte: number, rows: number): Replica {
  const r = Replica.open(join(dir, `${name}.db`), { actorId: id(byte) })
  r.applySchema(SCHEMA)
  r.transaction([{ sql: 'INSERT INTO counter (id, n) VALUES (1, 0)' }])
  for (let i = 1; i <= rows; i++) write(r, i)
  return r
}

function write(r: Replica, i: number): void {
  r.transaction([
    { sql: 'UPDATE counter SET n = ? WHERE id = 1', params: [BigInt(i)] },
    { sql: 'INSERT INTO items (id, pad) VALUES (?, ?)', params: [BigInt(i), 'x'.repeat(300)] },
  ])
}

/** Every file of the directory with its SHA-256: equal before and after a refused restore. */
function dirState(path: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const f of readdirSync(path).sort()) {
    out[f] = createHash('sha256')
      .update(readFileSync(join(path, f)))
      .digest('hex')
  }
  return out
}

describe('snapshot - backup and restore', () => {
  const snap = join(dir, 'a.snap')
  const aId = id(0xa1)

  it('snapshot - a backup taken under concurrent writes is one committed state, and its manifest is its version vector', async () => {
    const a = seeded('a', 0xa1, 400)
    let i = 400
    let writes = 0
    const state = { stop: false }
    // Writes between the backup's page steps (one page per step: hundreds of steps).
    const writer = (async () => {
      while (!state.stop && writes < 5000) {
        write(a, ++i)
        writes++
        await new Promise((r) => setImmediate(r))
      }
    })()
    const summary = await createSnapshot(a.db.name, snap, { clusterId: CLUSTER, stepPages: 1 })
    state.stop = true
    await writer
    assert.ok(writes > 10, `writes went on during the backup (${writes})`)
    assert.ok(summary.pages > 50, `a multi-step copy (${summary.pages} pages)`)
    const db = new Database(snap, { readonly: true })
    try {
      db.defaultSafeIntegers(false)
      const n = db.prepare('SELECT n FROM counter').pluck().get() as number
      const count = db.prepare('SELECT count(*) FROM items').pluck().get() as number
      const max = db.prepare('SELECT max(id) FROM items').pluck().get() as number
      assert.ok(n >= 400 && n < i, `a state between start and end (${n} of ${i})`)
      assert.equal(count, n, 'every item of the committed counter, no more')
      assert.equal(max, n)
      const manifest = verifySnapshot(snap, CLUSTER)
      // Version 1 made the counter row, each write one more.
      assert.deepEqual(manifest.versions[actorIdHex(aId)], { head: n + 1, gaps: [] })
      assert.deepEqual(summary.versions, manifest.versions)
      // No node identity: no ordinal 0, the origin is an ordinary site, no per-node buffers.
      assert.equal(
        db.prepare('SELECT count(*) FROM __patina_sites WHERE ordinal = 0').pluck().get(),
        0,
      )
      assert.equal(
        db
          .prepare('SELECT count(*) FROM __patina_sites WHERE site_id = ?')
          .pluck()
          .get(Buffer.from(aId)),
        1,
      )
      assert.equal(
        db.prepare('SELECT count(*) FROM __patina_heads WHERE site = 0').pluck().get(),
        0,
      )
      assert.equal(db.prepare('SELECT count(*) FROM __patina_buffer').pluck().get(), 0)
      assert.equal(db.prepare('SELECT count(*) FROM __patina_partials').pluck().get(), 0)
    } finally {
      db.close()
      a.close()
    }
  })

  it('snapshot - restore keeps the node its own actor id, and its own versions past the snapshot stay booked (no version reused)', async () => {
    const b = seeded('b', 0xb2, 3)
    const bPath = b.db.name
    b.close()
    const report = await restoreSnapshot(snap, bPath, { clusterId: CLUSTER })
    assert.equal(report.actorId, actorIdHex(id(0xb2)))
    assert.equal(report.newActor, false)
    // b's versions 1..4 are in no snapshot: reported, kept as gaps below b's head.
    assert.deepEqual(report.ownMissing, [[1, 4]])
    assert.deepEqual(report.lacking[actorIdHex(id(0xb2))], [[1, 4]])
    const r = Replica.open(bPath)
    try {
      assert.equal(actorIdHex(r.actorId), actorIdHex(id(0xb2)))
      assert.equal(r.headOf(r.actorId), 4)
      assert.equal(r.holds(r.actorId, 2), false)
      const { version } = r.transaction([{ sql: 'UPDATE counter SET n = n + 1 WHERE id = 1' }])
      assert.equal(version, 5, 'the next local write does not reuse a version peers may hold')
      const aHead = r.headOf(aId)
      assert.ok(aHead > 400)
      assert.ok(r.changesFor(aId, aHead) !== null, "the snapshot's origin is served as held")
    } finally {
      r.close()
    }
  })

  it('snapshot - restoring on the node the snapshot came from gives it back its own origin', async () => {
    const aPath = join(dir, 'a.db')
    const before = Replica.open(aPath)
    const headBefore = before.headOf(before.actorId)
    before.close()
    const report = await restoreSnapshot(snap, aPath, { clusterId: CLUSTER })
    assert.equal(report.actorId, actorIdHex(aId))
    const r = Replica.open(aPath)
    try {
      const snapHead = verifyHead(report.manifest.versions[actorIdHex(aId)])
      assert.equal(r.headOf(r.actorId), headBefore)
      assert.ok(r.changesFor(r.actorId, snapHead) !== null, 'own versions of the snapshot are held')
      assert.deepEqual(report.ownMissing, headBefore > snapHead ? [[snapHead + 1, headBefore]] : [])
    } finally {
      r.close()
    }
  })

  it('snapshot - --as-new-actor gives the node a fresh id; a missing database gets one too', async () => {
    const cPath = join(dir, 'c.db')
    seeded('c', 0xc3, 1).close()
    const report = await restoreSnapshot(snap, cPath, { clusterId: CLUSTER, asNewActor: true })
    assert.equal(report.newActor, true)
    assert.notEqual(report.actorId, actorIdHex(id(0xc3)))
    assert.notEqual(report.actorId, actorIdHex(aId))
    const r = Replica.open(cPath)
    assert.equal(actorIdHex(r.actorId), report.actorId)
    // The old id is now an ordinary origin whose versions sync may fetch.
    assert.deepEqual(report.ownMissing, [])
    r.close()
    const fresh = await restoreSnapshot(snap, join(dir, 'none.db'), { clusterId: CLUSTER })
    assert.equal(fresh.newActor, true)
  })

  it('snapshot - a compressed snapshot restores like a plain one', async () => {
    const gz = join(dir, 'a.snap.bin')
    const a = Replica.open(join(dir, 'a.db'))
    a.close()
    const summary = await createSnapshot(join(dir, 'a.db'), gz, {
      clusterId: CLUSTER,
      compress: true,
    })
    assert.equal(readFileSync(gz).subarray(0, 2).toString('hex'), '1f8b')
    assert.ok(summary.compressed)
    const report = await restoreSnapshot(gz, join(dir, 'd.db'), { clusterId: CLUSTER })
    assert.ok(report.manifest.versions[actorIdHex(aId)] !== undefined)
  })

  it('snapshot - corrupt, truncated, foreign and other-cluster files are refused and the data directory is unchanged', async () => {
    const data = mkdtempSync(join(dir, 'data-'))
    const target = join(data, 'state.db')
    const t = Replica.open(target, { actorId: id(0xe5) })
    t.applySchema(SCHEMA)
    t.transaction([{ sql: 'INSERT INTO counter (id, n) VALUES (1, 42)' }])
    t.close()
    const bytes = readFileSync(snap)
    const bad = join(dir, 'bad')
    // Schema files that lack the snapshot's table "items".
    const older = join(dir, 'older.sql')
    writeFileSync(
      older,
      'CREATE TABLE counter (id INTEGER NOT NULL PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0);\n',
    )
    const cases: [string, Buffer | (() => void), RegExp, number?, string?][] = [
      ['truncated', bytes.subarray(0, Math.floor(bytes.length / 2)), /corrupt or truncated/],
      ['truncated gzip', gzipSync(bytes).subarray(0, 5000), /cannot be read as a snapshot/],
      ['garbage', Buffer.from('hello, not a snapshot\n'), /not a Patina snapshot/],
      [
        'corrupt',
        (() => {
          const c = Buffer.from(bytes)
          for (let page = 1; page < 6; page++) c.fill(0x5a, 4096 * page, 4096 * page + 64)
          return c
        })(),
        /corrupt or truncated/,
      ],
      [
        'foreign sqlite',
        () => {
          const db = new Database(bad)
          db.exec('CREATE TABLE t (x)')
          db.close()
        },
        /no __patina_snapshot manifest/,
      ],
      ['other cluster', bytes, /cluster id 7, this node's \[gossip\] cluster_id is 8/, 8],
      [
        'newer schema than the files',
        bytes,
        /cannot be brought to the schema files.*items/,
        CLUSTER,
        older,
      ],
    ]
    const before = dirState(data)
    for (const [name, content, message, cluster, schema] of cases) {
      rmSync(bad, { force: true })
      if (typeof content === 'function') content()
      else writeFileSync(bad, content)
      await assert.rejects(
        restoreSnapshot(bad, target, {
          clusterId: cluster ?? CLUSTER,
          ...(schema === undefined ? {} : { schemaPaths: [schema] }),
        }),
        (err: unknown) => err instanceof SnapshotError && message.test(err.message),
        name,
      )
      assert.deepEqual(dirState(data), before, `${name}: the data directory is unchanged`)
    }
    // The manifest of a good snapshot is removed when it is installed.
    copyFileSync(snap, bad)
    await restoreSnapshot(bad, target, { clusterId: CLUSTER })
    const db = new Database(target, { readonly: true })
    const left = db
      .prepare('SELECT count(*) FROM sqlite_schema WHERE name = ?')
      .pluck()
      .get(MANIFEST_TABLE)
    db.close()
    assert.equal(left, 0)
  })
})

describe('snapshot - interrupted runs and open files', () => {
  const snap = join(dir, 'e.snap')

  it('snapshot - what a killed backup or restore left behind is cleared by the next run', async () => {
    const e = seeded('e', 0xe1, 5)
    const ePath = e.db.name
    writeFileSync(`${snap}.partial`, 'half a copy')
    await createSnapshot(ePath, snap, { clusterId: CLUSTER })
    e.close()
    assert.equal(existsSync(`${snap}.partial`), false)
    const target = join(dir, 'f.db')
    seeded('f', 0xf1, 1).close()
    writeFileSync(`${target}.restore`, 'half a restore')
    const report = await restoreSnapshot(snap, target, { clusterId: CLUSTER })
    assert.equal(report.actorId, actorIdHex(id(0xf1)))
    assert.equal(existsSync(`${target}.restore`), false)
    const r = Replica.open(target)
    assert.equal(r.query('SELECT count(*) AS n FROM items')[0]?.n, 5n)
    r.close()
  })

  it('snapshot - a database another process still has open is not swapped', async () => {
    const g = seeded('g', 0x61, 2)
    try {
      await assert.rejects(
        restoreSnapshot(snap, g.db.name, { clusterId: CLUSTER }),
        (err: unknown) =>
          err instanceof SnapshotError && /still open in another process/.test(err.message),
      )
      assert.equal(g.query('SELECT count(*) AS n FROM items')[0]?.n, 2n)
      assert.equal(actorIdHex(g.actorId), actorIdHex(id(0x61)))
    } finally {
      g.close()
    }
  })
})

const SNAPSHOT_MODULE = new URL('../../src/crdt/snapshot.ts', import.meta.url).href
/** Delays after the child says `go` at which it is killed: early, middle, late of the run. */
const KILL_AFTER_MS = [2, 25, 60, 150]

/** Runs `call` (an expression using `m`, the snapshot module) in a child, SIGKILLed `ms` after it starts. */
async function killedDuring(call: string, ms: number): Promise<boolean> {
  const code =
    `const m = await import(${JSON.stringify(SNAPSHOT_MODULE)}); ` +
    `process.stdout.write('go\\n'); await ${call}; process.stdout.write('done\\n')`
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let out = ''
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error('the child did not start within 10 s'))
    }, 10_000)
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      out += c
      if (!out.startsWith('go')) return
      clearTimeout(timer)
      setTimeout(() => child.kill('SIGKILL'), ms)
      resolve()
    })
  })
  await new Promise((resolve) => child.once('close', resolve))
  return out.includes('done')
}

describe('snapshot - kill -9 during backup and restore', () => {
  it('snapshot - after a kill -9 the data directory is intact and the command can be run again', async () => {
    const big = seeded('big', 0x71, 0)
    for (let t = 0; t < 20; t++) {
      big.transaction(
        Array.from({ length: 1000 }, (_, i) => ({
          sql: 'INSERT INTO items (id, pad) VALUES (?, ?)',
          params: [BigInt(t * 1000 + i + 1), 'z'.repeat(900)],
        })),
      )
    }
    big.close()
    const snap = join(dir, 'big.snap')
    const interrupted = { backup: 0, restore: 0 }
    for (const ms of KILL_AFTER_MS) {
      if (
        !(await killedDuring(
          `m.createSnapshot(${JSON.stringify(join(dir, 'big.db'))}, ${JSON.stringify(snap)}, { clusterId: ${CLUSTER} })`,
          ms,
        ))
      )
        interrupted.backup++
      // Either no snapshot or a whole one.
      if (existsSync(snap)) verifySnapshot(snap, CLUSTER)
    }
    await createSnapshot(join(dir, 'big.db'), snap, { clusterId: CLUSTER })
    const data = mkdtempSync(join(dir, 'killed-'))
    const target = join(data, 'state.db')
    const t = Replica.open(target, { actorId: id(0x72) })
    t.applySchema(SCHEMA)
    t.transaction([{ sql: 'INSERT INTO counter (id, n) VALUES (1, 1)' }])
    t.close()
    for (const ms of KILL_AFTER_MS) {
      if (
        !(await killedDuring(
          `m.restoreSnapshot(${JSON.stringify(snap)}, ${JSON.stringify(target)}, { clusterId: ${CLUSTER} })`,
          ms,
        ))
      )
        interrupted.restore++
      const db = new Database(target, { readonly: true })
      const check = db.prepare('PRAGMA integrity_check').pluck().get()
      db.close()
      assert.equal(check, 'ok', `killed after ${ms} ms: integrity_check`)
      const r = Replica.open(target)
      const items = r.query('SELECT count(*) AS n FROM items')[0]?.n
      assert.equal(actorIdHex(r.actorId), actorIdHex(id(0x72)), `killed after ${ms} ms`)
      r.close()
      assert.ok(
        items === 0n || items === 20000n,
        `the old database or the new one (${String(items)})`,
      )
    }
    // At least the early kills land inside the run (else this test proves nothing).
    assert.ok(interrupted.backup >= 1 && interrupted.restore >= 1, JSON.stringify(interrupted))
    process.stdout.write(
      `# kill -9 landed inside: ${JSON.stringify(interrupted)} of ${KILL_AFTER_MS.length}\n`,
    )
    const report = await restoreSnapshot(snap, target, { clusterId: CLUSTER })
    assert.equal(report.actorId, actorIdHex(id(0x72)))
    const r = Replica.open(target)
    assert.equal(r.query('SELECT count(*) AS n FROM items')[0]?.n, 20000n)
    r.close()
  })
})

describe('snapshot - restore over a crashed agent', () => {
  it('snapshot - the old database of an agent killed mid-run (its -wal not checkpointed) gives its actor id and head', async () => {
    const path = join(dir, 'crashed.db')
    const replica = new URL('../../src/crdt/replica.ts', import.meta.url).href
    const code =
      `const { Replica } = await import(${JSON.stringify(replica)}); ` +
      `const r = Replica.open(${JSON.stringify(path)}, { actorId: new Uint8Array(16).fill(0x33) }); ` +
      `r.applySchema(${JSON.stringify(SCHEMA)}); ` +
      `for (let i = 0; i < 30; i++) r.transaction([{ sql: 'INSERT INTO items (id) VALUES (?)', params: [BigInt(i)] }]); ` +
      `process.kill(process.pid, 'SIGKILL')`
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      stdio: 'inherit',
    })
    await new Promise((resolve) => child.once('close', resolve))
    assert.ok(existsSync(`${path}-wal`), 'the crash left a -wal')
    const report = await restoreSnapshot(join(dir, 'a.snap'), path, { clusterId: CLUSTER })
    const own = actorIdHex(new Uint8Array(16).fill(0x33))
    assert.equal(report.actorId, own)
    assert.deepEqual(report.ownMissing, [[1, 30]])
    const r = Replica.open(path)
    try {
      assert.equal(r.headOf(r.actorId), 30)
    } finally {
      r.close()
    }
  })
})

function verifyHead(v: { head: number } | undefined): number {
  assert.ok(v !== undefined)
  return v.head
}
