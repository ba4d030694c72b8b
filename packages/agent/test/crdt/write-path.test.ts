/**
 * Goal: the only way to write a replicated table is Patina's write path, while anyone may read
 * the file; typed values survive the write path and replication exactly; a database keeps its
 * actor id for life.
 *
 * Method: file-backed replicas (tempReplicas). A second, plain better-sqlite3 connection on the
 * same file (no Patina functions registered) tries INSERT, UPDATE and DELETE, which must fail
 * with "no such function: write_through_the_patina_agent" and leave rows, clocks, version index and heads as
 * they were; the same connection reads, also while the replica keeps its connection open. A
 * separate OS process (`node -e` with better-sqlite3, standing in for the sqlite3 CLI) does the
 * same. Edge values (64-bit integer limits, 2^53 + 1, REAL 1.0 in an untyped column, astral
 * text, blobs, NULL) go through transaction() and query(), then changesFor/apply to a second
 * replica, checked with typeof on both sides. The actor id is checked across reopens.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import Database from 'better-sqlite3'
import { ReplicaError } from '../../src/crdt/errors.ts'
import { Replica, type Statement } from '../../src/crdt/replica.ts'
import type { SqlValue } from '../../src/crdt/values.ts'
import { applySchemaSql, actorId, snapshot, tempReplicas } from './helpers.ts'

const SCHEMA = `
CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT, n INTEGER NOT NULL DEFAULT 0);
CREATE TABLE vals (id INTEGER NOT NULL PRIMARY KEY, v);
CREATE TABLE keyed (k NOT NULL PRIMARY KEY, note TEXT);
`

const tmp = tempReplicas('patina-write-path-')
after(() => {
  tmp.cleanup()
})

let counter = 0
function fresh(siteByte?: number): { replica: Replica; path: string } {
  const name = `db${++counter}`
  const replica = tmp.open(name, siteByte)
  applySchemaSql(replica, SCHEMA)
  return { replica, path: join(tmp.dir, `${name}.db`) }
}

function seed(r: Replica): void {
  const { version } = r.transaction([
    { sql: "INSERT INTO t (id, v, n) VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', 3)" },
  ])
  assert.equal(version, 1)
}

/** Everything Patina keeps about the data: rows, clocks, version index, heads and gaps. */
function state(r: Replica): unknown {
  return {
    snapshot: snapshot(r),
    vidx: r.query('SELECT * FROM "t__patina_vidx" ORDER BY __site, __dbv, id'),
    heads: r.query('SELECT * FROM __patina_heads ORDER BY site'),
    gaps: r.query('SELECT * FROM __patina_gaps ORDER BY site, start_v'),
    origins: r.originStates(),
  }
}

/** A plain connection: better-sqlite3 with no Patina function registered. */
function plain(path: string, options: Database.Options = {}): Database.Database {
  const db = new Database(path, options)
  db.pragma('busy_timeout = 5000')
  db.defaultSafeIntegers(true)
  return db
}

const OUTSIDE_WRITES = [
  "INSERT INTO t (id, v) VALUES (4, 'four')",
  "INSERT OR REPLACE INTO t (id, v) VALUES (1, 'replaced')",
  "UPDATE t SET v = 'changed' WHERE id = 1",
  'UPDATE t SET id = 10 WHERE id = 2',
  'DELETE FROM t WHERE id = 3',
  'DELETE FROM t',
]

describe('write-path - writes outside Patina', () => {
  it('write-path - INSERT, UPDATE and DELETE from a plain connection fail and change nothing', () => {
    const { replica, path } = fresh()
    seed(replica)
    const before = state(replica)
    const other = plain(path)
    try {
      for (const sql of OUTSIDE_WRITES) {
        assert.throws(
          () => other.prepare(sql).run(),
          (err: unknown) =>
            err instanceof Database.SqliteError &&
            err.message === 'no such function: write_through_the_patina_agent',
          sql,
        )
        // The same statement inside an explicit transaction fails the same way.
        other.exec('BEGIN IMMEDIATE')
        assert.throws(
          () => other.exec(sql),
          /no such function: write_through_the_patina_agent/,
          sql,
        )
        other.exec('ROLLBACK')
      }
      assert.deepStrictEqual(other.prepare('SELECT id, v, n FROM t ORDER BY id').raw().all(), [
        [1n, 'one', 1n],
        [2n, 'two', 2n],
        [3n, 'three', 3n],
      ])
    } finally {
      other.close()
    }
    assert.deepStrictEqual(state(replica), before)
    assert.equal(replica.headOf(replica.actorId), 1)
    // The replica still writes normally afterwards, with the next version.
    assert.equal(replica.transaction([{ sql: "UPDATE t SET v = 'uno' WHERE id = 1" }]).version, 2)
  })

  it("write-path - a direct write on the replica's own connection is refused as WRITE_OUTSIDE_PATINA", () => {
    const { replica } = fresh()
    seed(replica)
    const before = state(replica)
    for (const sql of OUTSIDE_WRITES) {
      assert.throws(
        () => replica.db.prepare(sql).run(),
        (err: unknown) => err instanceof ReplicaError && err.code === 'WRITE_OUTSIDE_PATINA',
        sql,
      )
    }
    // query() runs readers only, and a writer that returns rows is still refused.
    for (const sql of [
      "INSERT INTO t (id, v) VALUES (4, 'four') RETURNING id",
      'DELETE FROM t RETURNING id',
    ]) {
      assert.throws(
        () => replica.query(sql),
        (err: unknown) => err instanceof ReplicaError && err.code === 'WRITE_OUTSIDE_PATINA',
        sql,
      )
    }
    assert.deepStrictEqual(state(replica), before)
  })
})

describe('write-path - transaction()', () => {
  /** Rows, head in memory, head on disk: the three must agree after any transaction(). */
  function observed(r: Replica): unknown {
    return {
      rows: r.query('SELECT id, v FROM t ORDER BY id'),
      head: r.headOf(r.actorId),
      persistedHead: r.query('SELECT head FROM __patina_heads WHERE site = 0')[0]?.head ?? 0n,
      inTransaction: r.db.inTransaction,
    }
  }

  it('write-path - rowsAffected counts the rows of INSERT, UPDATE and DELETE ... RETURNING', () => {
    const { replica } = fresh()
    const { results, version } = replica.transaction([
      { sql: "INSERT INTO t (id, v) VALUES (1, 'a'), (2, 'b') RETURNING id" },
      { sql: "UPDATE t SET v = 'c' RETURNING id" },
      { sql: 'DELETE FROM t WHERE id = 1 RETURNING id' },
      { sql: 'SELECT id FROM t' },
    ])
    assert.equal(version, 1)
    assert.deepStrictEqual(replica.query('SELECT id, v FROM t'), [{ id: 2n, v: 'c' }])
    assert.deepStrictEqual(
      results.map((r) => r.rowsAffected),
      [2, 2, 1, 0],
    )
  })

  for (const control of ['COMMIT', 'END', 'ROLLBACK']) {
    it(`write-path - ${control} among the statements cannot commit part of a transaction`, () => {
      // transaction() promises: any failure rolls back everything and consumes no version.
      const { replica, path } = fresh()
      seed(replica)
      const before = observed(replica)
      assert.throws(() =>
        replica.transaction([
          { sql: "INSERT INTO t (id, v) VALUES (10, 'before')" },
          { sql: control },
          { sql: "INSERT INTO t (id, v) VALUES (11, 'after')" },
        ]),
      )
      assert.deepStrictEqual(observed(replica), before, 'nothing of it is kept')
      replica.close()
      const reopened = Replica.open(path)
      try {
        assert.deepStrictEqual(observed(reopened), before, 'nothing of it is on disk')
      } finally {
        reopened.close()
      }
    })
  }

  it('write-path - a savepoint rolled back to its start inside transaction() consumes no version (or is refused)', () => {
    const { replica } = fresh()
    seed(replica)
    const before = observed(replica)
    let version: number | null | undefined
    try {
      version = replica.transaction([
        { sql: 'SAVEPOINT s' },
        { sql: "INSERT INTO t (id, v) VALUES (10, 'undone')" },
        { sql: 'ROLLBACK TO s' },
        { sql: 'RELEASE s' },
      ]).version
    } catch {
      version = undefined // refusing savepoints is fine too
    }
    if (version !== undefined) assert.equal(version, null, 'it changed nothing')
    assert.deepStrictEqual(observed(replica), before)
    assert.equal(replica.changesFor(replica.actorId, 2), null)
  })

  it('write-path - a savepoint rolled back in the middle of transaction() leaves seqs dense (or is refused)', () => {
    const { replica } = fresh()
    seed(replica)
    const before = observed(replica)
    let version: number | null | undefined
    try {
      version = replica.transaction([
        { sql: "INSERT INTO t (id, v) VALUES (10, 'kept')" },
        { sql: 'SAVEPOINT s' },
        { sql: "INSERT INTO t (id, v) VALUES (11, 'undone')" },
        { sql: 'ROLLBACK TO s' },
        { sql: 'RELEASE s' },
        { sql: "INSERT INTO t (id, v) VALUES (12, 'kept')" },
      ]).version
    } catch {
      assert.deepStrictEqual(observed(replica), before, 'refused: nothing kept')
      return
    }
    assert.equal(version, 2)
    assert.deepStrictEqual(replica.query('SELECT id FROM t WHERE id >= 10 ORDER BY id'), [
      { id: 10n },
      { id: 12n },
    ])
    const cs = replica.changesFor(replica.actorId, 2)
    assert.ok(cs !== null)
    // Two rows of two non-key columns: seqs 0..3, as for any fresh version.
    assert.deepStrictEqual(
      cs.changes.map((c) => c.seq),
      [0, 1, 2, 3],
    )
    assert.equal(cs.lastSeq, 3)
  })
})

describe('write-path - reads from other connections', () => {
  it('write-path - a plain connection reads the rows, also while the replica keeps writing', () => {
    const { replica, path } = fresh()
    seed(replica)
    const reader = plain(path)
    const readOnly = plain(path, { readonly: true })
    try {
      const rows = (db: Database.Database): unknown[] =>
        db.prepare('SELECT id, v, n FROM t ORDER BY id').raw().all()
      const expected = [
        [1n, 'one', 1n],
        [2n, 'two', 2n],
        [3n, 'three', 3n],
      ]
      assert.deepStrictEqual(rows(reader), expected)
      assert.deepStrictEqual(rows(readOnly), expected)
      // A later commit of the replica (which stays open) is visible to the other connections.
      replica.transaction([
        { sql: "UPDATE t SET v = 'deux' WHERE id = 2" },
        { sql: 'DELETE FROM t WHERE id = 3' },
      ])
      const after2 = [
        [1n, 'one', 1n],
        [2n, 'deux', 2n],
      ]
      assert.deepStrictEqual(rows(reader), after2)
      assert.deepStrictEqual(rows(readOnly), after2)
      // The metadata tables are readable too.
      assert.deepStrictEqual(
        reader.prepare('SELECT head FROM __patina_heads WHERE site = 0').pluck().get(),
        2n,
      )
      // A read transaction on the other connection does not block the replica's writes.
      reader.exec('BEGIN')
      assert.deepStrictEqual(rows(reader), after2)
      assert.equal(replica.transaction([{ sql: "UPDATE t SET v = 'un' WHERE id = 1" }]).version, 3)
      assert.deepStrictEqual(rows(reader), after2, 'snapshot isolation inside the read')
      reader.exec('COMMIT')
      assert.deepStrictEqual(rows(reader), [
        [1n, 'un', 1n],
        [2n, 'deux', 2n],
      ])
    } finally {
      reader.close()
      readOnly.close()
    }
    assert.equal(replica.db.open, true)
  })

  it('write-path - another OS process can read the file but not write it', () => {
    const { replica, path } = fresh()
    seed(replica)
    const before = state(replica)
    const script = `
      const Database = require(process.env.PATINA_SQLITE_MODULE)
      const db = new Database(process.env.PATINA_DB)
      db.pragma('busy_timeout = 5000')
      const out = {}
      for (const [name, sql] of [
        ['insert', "INSERT INTO t (id, v) VALUES (99, 'from-cli')"],
        ['update', "UPDATE t SET v = 'cli'"],
        ['delete', 'DELETE FROM t'],
      ]) {
        try {
          db.prepare(sql).run()
          out[name] = 'ok'
        } catch (err) {
          out[name] = err.message
        }
      }
      out.rows = db.prepare('SELECT id, v, n FROM t ORDER BY id').raw().all()
      db.close()
      process.stdout.write(JSON.stringify(out) + '\\n')
    `
    const child = spawnSync(process.execPath, ['-e', script], {
      env: {
        ...process.env,
        PATINA_DB: path,
        PATINA_SQLITE_MODULE: createRequire(import.meta.url).resolve('better-sqlite3'),
      },
      encoding: 'utf8',
      timeout: 15_000,
    })
    assert.equal(child.status, 0, child.stderr)
    assert.deepStrictEqual(JSON.parse(child.stdout), {
      insert: 'no such function: write_through_the_patina_agent',
      update: 'no such function: write_through_the_patina_agent',
      delete: 'no such function: write_through_the_patina_agent',
      rows: [
        [1, 'one', 1],
        [2, 'two', 2],
        [3, 'three', 3],
      ],
    })
    assert.deepStrictEqual(state(replica), before)
  })
})

// ------------------------------------------------------------------------------ typed values

interface Case {
  readonly name: string
  readonly value: SqlValue
  readonly type: 'integer' | 'real' | 'text' | 'blob' | 'null'
}

const CASES: readonly Case[] = [
  { name: 'INTEGER 2^63-1', value: 2n ** 63n - 1n, type: 'integer' },
  { name: 'INTEGER -2^63', value: -(2n ** 63n), type: 'integer' },
  { name: 'INTEGER 2^53+1', value: 2n ** 53n + 1n, type: 'integer' },
  { name: 'INTEGER 0', value: 0n, type: 'integer' },
  { name: 'REAL 1.0', value: 1.0, type: 'real' },
  { name: 'REAL 2^53', value: 2 ** 53, type: 'real' },
  { name: 'REAL -2.5e-300', value: -2.5e-300, type: 'real' },
  { name: 'TEXT astral', value: 'a\u{1F600}b\u{10FFFF}\uFFFF', type: 'text' },
  { name: 'TEXT with BOM', value: '\uFEFFbom', type: 'text' },
  { name: 'TEXT empty', value: '', type: 'text' },
  { name: 'BLOB', value: Uint8Array.from([0, 255, 1, 0]), type: 'blob' },
  { name: 'BLOB empty', value: new Uint8Array(0), type: 'blob' },
  { name: 'NULL', value: null, type: 'null' },
]

/** A comparable form that keeps the storage class (1n, 1.0 and '1' all differ). */
function typed(v: unknown): unknown {
  if (v instanceof Uint8Array) return { blob: Buffer.from(v).toString('hex') }
  if (typeof v === 'bigint') return { int: v.toString() }
  if (typeof v === 'number') return { real: v }
  return v
}

function readVals(r: Replica): unknown[] {
  return r
    .query('SELECT id, v, typeof(v) AS ty FROM vals ORDER BY id')
    .map((row) => ({ id: row.id, v: typed(row.v), ty: row.ty }))
}

function expectedVals(): unknown[] {
  return CASES.map((c, i) => ({ id: BigInt(i + 1), v: typed(c.value), ty: c.type }))
}

describe('write-path - typed values', () => {
  it('write-path - values round-trip exactly through transaction() and query()', () => {
    const { replica } = fresh()
    const statements: Statement[] = CASES.map((c, i) =>
      i % 2 === 0
        ? { sql: 'INSERT INTO vals (id, v) VALUES (?, ?)', params: [BigInt(i + 1), c.value] }
        : {
            sql: 'INSERT INTO vals (id, v) VALUES (:id, :v)',
            params: { id: BigInt(i + 1), v: c.value },
          },
    )
    const { version } = replica.transaction(statements)
    assert.equal(version, 1)
    assert.deepStrictEqual(readVals(replica), expectedVals())
    // Parameters bind with their type, so a lookup by the same typed value finds the row.
    CASES.forEach((c, i) => {
      if (c.value === null) return
      assert.deepStrictEqual(
        replica.query('SELECT id FROM vals WHERE v = ? AND typeof(v) = ?', [c.value, c.type]),
        [{ id: BigInt(i + 1) }],
        c.name,
      )
    })
  })

  it('write-path - values round-trip exactly through changesFor/apply to a second replica', () => {
    const { replica: a } = fresh(1)
    const { replica: b } = fresh(2)
    a.transaction(
      CASES.map((c, i) => ({
        sql: 'INSERT INTO vals (id, v) VALUES (?, ?)',
        params: [BigInt(i + 1), c.value],
      })),
    )
    const cs = a.changesFor(a.actorId, 1)
    assert.ok(cs !== null)
    assert.deepStrictEqual(
      cs.changes.map((ch) => typed(ch.val)),
      CASES.map((c) => typed(c.value)),
      'the changes carry the typed values',
    )
    b.apply([cs])
    assert.deepStrictEqual(readVals(b), expectedVals())
    assert.deepStrictEqual(snapshot(b), snapshot(a))
  })

  it('write-path - INTEGER 1 to REAL 1.0 is a change, and it travels as a REAL', () => {
    const { replica: a } = fresh(1)
    const { replica: b } = fresh(2)
    const v1 = a.transaction([{ sql: 'INSERT INTO vals (id, v) VALUES (1, ?)', params: [1n] }])
    const v2 = a.transaction([{ sql: 'UPDATE vals SET v = ? WHERE id = 1', params: [1.0] }])
    assert.equal(v2.version, 2, 'same number, other storage class: a new version')
    const v3 = a.transaction([{ sql: 'UPDATE vals SET v = ? WHERE id = 1', params: [1.0] }])
    assert.equal(v3.version, null, 'the same REAL again changes nothing')
    for (const version of [v1.version, v2.version]) {
      const cs = a.changesFor(a.actorId, version ?? 0)
      assert.ok(cs !== null)
      b.apply([cs])
    }
    for (const r of [a, b]) {
      assert.deepStrictEqual(readVals(r), [{ id: 1n, v: { real: 1 }, ty: 'real' }])
    }
  })

  it('write-path - typed primary keys (64-bit, REAL, astral and BOM text, BLOB) replicate to the same key', () => {
    const { replica: a } = fresh(1)
    const { replica: b } = fresh(2)
    const keys: SqlValue[] = [
      2n ** 63n - 1n,
      -(2n ** 63n),
      2n ** 53n + 1n,
      2.5,
      'k\u{1F600}',
      '\uFEFFkey',
      'key',
      Uint8Array.from([0xef, 0xbb, 0xbf]),
      Uint8Array.from([0, 1]),
    ]
    a.transaction(
      keys.map((k, i) => ({
        sql: 'INSERT INTO keyed (k, note) VALUES (?, ?)',
        params: [k, `n${i}`],
      })),
    )
    const cs = a.changesFor(a.actorId, 1)
    assert.ok(cs !== null)
    b.apply([cs])
    const read = (r: Replica): unknown[] =>
      r
        .query('SELECT k, typeof(k) AS ty, note FROM keyed ORDER BY note')
        .map((row) => ({ k: typed(row.k), ty: row.ty, note: row.note }))
    assert.equal(read(a).length, keys.length)
    assert.deepStrictEqual(read(b), read(a))
    assert.deepStrictEqual(snapshot(b), snapshot(a))
  })
})

describe('write-path - actor id', () => {
  it('write-path - the actor id is created on first open and kept across reopens', () => {
    const { replica, path } = fresh()
    const first = Buffer.from(replica.actorId)
    assert.equal(first.length, 16)
    assert.ok(!first.equals(Buffer.alloc(16)), 'a random actor id is not all zeros')
    replica.close()
    for (let i = 0; i < 2; i++) {
      const again = Replica.open(path)
      try {
        assert.ok(Buffer.from(again.actorId).equals(first), 'same 16 bytes after reopen')
        assert.deepStrictEqual(
          again.query('SELECT ordinal, site_id FROM __patina_sites WHERE ordinal = 0'),
          [{ ordinal: 0n, site_id: first }],
        )
      } finally {
        again.close()
      }
    }
    // Two new databases get different ids.
    const other = fresh()
    assert.ok(!Buffer.from(other.replica.actorId).equals(first))
  })

  it('write-path - a actorId option is used for a new database and ignored for an existing one', () => {
    const { replica, path } = fresh(7)
    assert.deepStrictEqual(Buffer.from(replica.actorId), Buffer.from(actorId(7)))
    seed(replica)
    replica.close()
    const reopened = Replica.open(path, { actorId: actorId(9) })
    try {
      assert.deepStrictEqual(Buffer.from(reopened.actorId), Buffer.from(actorId(7)))
      assert.equal(reopened.headOf(actorId(7)), 1, 'the versions are still its own')
      assert.equal(reopened.headOf(actorId(9)), 0)
      assert.deepStrictEqual(
        reopened.query('SELECT count(*) AS n FROM __patina_sites'),
        [{ n: 1n }],
        'the ignored id is not registered',
      )
      const { version } = reopened.transaction([{ sql: "UPDATE t SET v = 'x' WHERE id = 1" }])
      assert.equal(version, 2)
      const cs = reopened.changesFor(actorId(7), 2)
      assert.ok(cs !== null)
      assert.ok(cs.changes.every((c) => Buffer.from(c.actorId).equals(Buffer.from(actorId(7)))))
    } finally {
      reopened.close()
    }
  })
})
