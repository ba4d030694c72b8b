/**
 * Goal: TEXT that is not valid UTF-8 can never make replicas differ: a local write that would
 * store it (any column, key or not, insert or update) fails with INVALID_TEXT and changes
 * nothing, while valid TEXT, multi-byte or holding a real U+FFFD, replicates byte for byte.
 *
 * Method: file-backed replicas (tempReplicas). Ill-formed TEXT comes from SQL
 * (`CAST(X'..' AS TEXT)`, or a BLOB parameter cast to TEXT); each refusal is checked for its
 * code and message, and for leaving rows, clocks, version index and heads as they were, with the
 * next transaction getting the next version. Accepted values travel through changesFor/apply to
 * a second replica and are compared with hex() on both. A fast-check property writes random byte
 * strings (biased to the bytes of multi-byte, surrogate and U+FFFD sequences) as TEXT and checks
 * that exactly those a fatal TextDecoder accepts are stored, unchanged.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import fc from 'fast-check'
import type { Change } from '../../src/crdt/changes.ts'
import { ReplicaError } from '../../src/crdt/errors.ts'
import { packPk } from '../../src/crdt/pk-codec.ts'
import type { Replica, Statement } from '../../src/crdt/replica.ts'
import { applySchemaSql, assertVersionIndexExact, snapshot, tempReplicas } from './helpers.ts'

const SCHEMA = `
CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT, n INTEGER, u, b BLOB);
CREATE TABLE k (k TEXT NOT NULL PRIMARY KEY, note TEXT);
CREATE TABLE keys_only (k TEXT NOT NULL PRIMARY KEY);
`

const tmp = tempReplicas('patina-invalid-text-')
after(() => {
  tmp.cleanup()
})

let counter = 0
function fresh(siteByte?: number): Replica {
  const replica = tmp.open(`db${++counter}`, siteByte)
  applySchemaSql(replica, SCHEMA)
  return replica
}

/** Everything Patina keeps: rows (as bytes), clocks, version indexes, heads and gaps. */
function state(r: Replica): unknown {
  return {
    snapshot: snapshot(r),
    bytes: {
      t: r.query('SELECT id, hex(v), hex(n), hex(u), hex(b) FROM t ORDER BY id'),
      k: r.query('SELECT hex(k), hex(note) FROM k ORDER BY k'),
      keys: r.query('SELECT hex(k) FROM keys_only ORDER BY k'),
    },
    vidx: ['t', 'k', 'keys_only'].map((name) => r.query(`SELECT * FROM "${name}__patina_vidx"`)),
    heads: r.query('SELECT * FROM __patina_heads ORDER BY site'),
    gaps: r.query('SELECT * FROM __patina_gaps ORDER BY site'),
    head: r.headOf(r.actorId),
  }
}

/** Asserts that `statements` fail with INVALID_TEXT naming `table` and `column`, changing nothing. */
function assertRefused(
  r: Replica,
  statements: readonly Statement[],
  table: string,
  column: string,
): void {
  const before = state(r)
  assert.throws(
    () => r.transaction(statements),
    (err: unknown) => {
      assert.ok(err instanceof ReplicaError, `a ReplicaError, got ${String(err)}`)
      assert.equal(err.code, 'INVALID_TEXT')
      assert.equal(
        err.message,
        `table "${table}", column "${column}": TEXT must be valid UTF-8 (store raw bytes as a BLOB)`,
      )
      return true
    },
    statements.map((s) => s.sql).join('; '),
  )
  assert.deepStrictEqual(state(r), before, 'a refused transaction changes nothing')
  assert.equal(r.db.inTransaction, false)
}

/** Sends every version `from` holds and `to` lacks; every changeset must apply. */
function replicate(from: Replica, to: Replica): void {
  const changesets = []
  for (let v = to.headOf(from.actorId) + 1; v <= from.headOf(from.actorId); v++) {
    const cs = from.changesFor(from.actorId, v)
    assert.ok(cs !== null)
    changesets.push(cs)
  }
  for (const outcome of to.apply(changesets)) assert.equal(outcome.status, 'applied')
}

const FF61 = "CAST(X'FF61' AS TEXT)"

describe('invalid-text - non-key columns', () => {
  it("invalid-text - INSERT of X'FF61' as TEXT is refused in any column, and nothing changes", () => {
    const r = fresh()
    assert.equal(r.transaction([{ sql: "INSERT INTO t (id, v) VALUES (1, 'one')" }]).version, 1)
    assertRefused(r, [{ sql: `INSERT INTO t (id, v) VALUES (2, ${FF61})` }], 't', 'v')
    // An INTEGER column keeps TEXT that is not a number as TEXT; an untyped one keeps anything.
    assertRefused(r, [{ sql: `INSERT INTO t (id, n) VALUES (2, ${FF61})` }], 't', 'n')
    assertRefused(r, [{ sql: `INSERT INTO t (id, u) VALUES (2, ${FF61})` }], 't', 'u')
    assertRefused(r, [{ sql: `INSERT INTO t (id, b) VALUES (2, ${FF61})` }], 't', 'b')
    // A bound BLOB cast to TEXT, and other ill-formed sequences: a lone continuation byte, an
    // overlong NUL, a surrogate encoded in UTF-8, a code point above U+10FFFF, a cut sequence.
    for (const hex of ['61FF', '80', 'C080', 'EDA080', 'F4908080', 'E282']) {
      assertRefused(
        r,
        [
          {
            sql: 'INSERT INTO t (id, v) VALUES (2, CAST(? AS TEXT))',
            params: [Buffer.from(hex, 'hex')],
          },
        ],
        't',
        'v',
      )
    }
    // The whole transaction fails, not just the statement: the valid insert before it is undone.
    assertRefused(
      r,
      [
        { sql: "INSERT INTO t (id, v) VALUES (2, 'two')" },
        { sql: `INSERT INTO t (id, v) VALUES (3, ${FF61})` },
      ],
      't',
      'v',
    )
    // No version was consumed by the refusals.
    assert.equal(r.transaction([{ sql: "INSERT INTO t (id, v) VALUES (2, 'two')" }]).version, 2)
    assertVersionIndexExact(r)
  })

  it('invalid-text - valid multi-byte TEXT, a real U+FFFD and a NUL are kept and replicate byte for byte', () => {
    const a = fresh(0x0a)
    const b = fresh(0x0b)
    const values = [
      "'é'",
      "'😀 emoji'",
      "CAST(X'EFBFBD' AS TEXT)", // U+FFFD itself: valid, checked byte for byte
      "CAST(X'61EFBFBD62' AS TEXT)",
      "CAST(X'610062' AS TEXT)", // a NUL inside TEXT is valid UTF-8
      "CAST(X'F4808080' AS TEXT)", // a code point of plane 16
    ]
    a.transaction(
      values.map((v, i) => ({
        sql: `INSERT INTO t (id, v, n, u) VALUES (${i + 1}, ${v}, ${v}, ${v})`,
      })),
    )
    // A BLOB holding the bytes that are not UTF-8 is fine: that is what BLOBs are for.
    a.transaction([{ sql: "INSERT INTO t (id, b) VALUES (100, X'FF61')" }])
    replicate(a, b)
    const bytes = (r: Replica): unknown =>
      r.query('SELECT id, typeof(v), hex(v), hex(n), hex(u), typeof(b), hex(b) FROM t ORDER BY id')
    assert.deepStrictEqual(bytes(b), bytes(a))
    assert.deepStrictEqual(
      a.query('SELECT hex(v) AS v FROM t WHERE id <= 6 ORDER BY id').map((row) => row.v),
      ['C3A9', 'F09F988020656D6F6A69', 'EFBFBD', '61EFBFBD62', '610062', 'F4808080'],
    )
    assert.deepStrictEqual(snapshot(b), snapshot(a))
  })

  it('invalid-text - a real U+FFFD does not hide an ill-formed value elsewhere in the transaction', () => {
    const r = fresh()
    assertRefused(
      r,
      [
        { sql: "INSERT INTO t (id, v) VALUES (1, CAST(X'EFBFBD' AS TEXT))" },
        { sql: `INSERT INTO k (k, note) VALUES ('x', ${FF61})` },
      ],
      'k',
      'note',
    )
    assertRefused(
      r,
      [{ sql: "INSERT INTO t (id, v) VALUES (1, CAST(X'EFBFBDFF' AS TEXT))" }],
      't',
      'v',
    )
  })
})

describe('invalid-text - keys', () => {
  it("invalid-text - a TEXT key X'FF' is refused, so X'FF' and X'FE' can never become one row", () => {
    const a = fresh(0x0a)
    const b = fresh(0x0b)
    assertRefused(
      a,
      [{ sql: "INSERT INTO k (k, note) VALUES (CAST(X'FF' AS TEXT), 'ff')" }],
      'k',
      'k',
    )
    assertRefused(
      a,
      [
        { sql: "INSERT INTO k (k, note) VALUES (CAST(X'FF' AS TEXT), 'ff')" },
        { sql: "INSERT INTO k (k, note) VALUES (CAST(X'FE' AS TEXT), 'fe')" },
      ],
      'k',
      'k',
    )
    // A table whose only column is its key stamps no cell, only the row.
    assertRefused(
      a,
      [{ sql: "INSERT INTO keys_only VALUES (CAST(X'FE' AS TEXT))" }],
      'keys_only',
      'k',
    )
    // Keys that differ in valid multi-byte TEXT stay two rows everywhere.
    a.transaction([
      { sql: "INSERT INTO k (k, note) VALUES ('é', 'e acute'), ('è', 'e grave')" },
      { sql: "INSERT INTO k (k, note) VALUES (CAST(X'EFBFBD' AS TEXT), 'fffd')" },
      { sql: "INSERT INTO keys_only VALUES ('ü'), ('ű')" },
    ])
    replicate(a, b)
    const keys = (r: Replica): unknown => ({
      k: r.query('SELECT hex(k), note FROM k ORDER BY k'),
      keys: r.query('SELECT hex(k) FROM keys_only ORDER BY k'),
    })
    assert.deepStrictEqual(keys(b), keys(a))
    assert.equal(b.query('SELECT count(*) AS n FROM k')[0]?.n, 3n)
    assert.equal(b.query('SELECT count(*) AS n FROM keys_only')[0]?.n, 2n)
  })

  it('invalid-text - a received change whose key holds TEXT that is not UTF-8 is never merged', () => {
    // An honest peer cannot send one (its writes are refused); a key blob carrying one anyway
    // fails to decode (fatal decoder in pk-codec.ts) instead of turning into U+FFFD.
    const r = fresh(0x0b)
    const origin = new Uint8Array(16).fill(0x0a)
    const keyed = (byte: number, version: number): Change => {
      const pk = packPk(['a']) // [1 column, (1 << 3) | TEXT, length 1, 0x61]
      pk[3] = byte
      return {
        table: 'k',
        pk,
        cid: 'note',
        val: 'x',
        colVersion: 1,
        dbVersion: version,
        actorId: origin,
        cl: 1,
        seq: 0,
      }
    }
    const outcomes = r.apply([
      { kind: 'full', actorId: origin, version: 1, lastSeq: 0, changes: [keyed(0xff, 1)] },
      { kind: 'full', actorId: origin, version: 2, lastSeq: 0, changes: [keyed(0xfe, 2)] },
    ])
    for (const o of outcomes) {
      assert.notEqual(o.status, 'applied')
      assert.match(o.reason ?? '', /not valid UTF-8/)
    }
    assert.deepStrictEqual(r.query('SELECT * FROM k'), [])
  })
})

describe('invalid-text - updates', () => {
  it('invalid-text - UPDATE of a column, UPDATE of the key and an upsert to ill-formed TEXT are refused', () => {
    const r = fresh()
    r.transaction([
      { sql: "INSERT INTO t (id, v, n) VALUES (1, 'one', 1)" },
      { sql: "INSERT INTO k (k, note) VALUES ('a', 'first')" },
      { sql: "INSERT INTO keys_only VALUES ('a')" },
    ])
    assertRefused(r, [{ sql: `UPDATE t SET v = ${FF61} WHERE id = 1` }], 't', 'v')
    assertRefused(r, [{ sql: `UPDATE t SET n = 2, u = ${FF61} WHERE id = 1` }], 't', 'u')
    assertRefused(r, [{ sql: `UPDATE k SET note = ${FF61}` }], 'k', 'note')
    assertRefused(r, [{ sql: "UPDATE k SET k = CAST(X'FF' AS TEXT)" }], 'k', 'k')
    assertRefused(r, [{ sql: "UPDATE keys_only SET k = CAST(X'FE' AS TEXT)" }], 'keys_only', 'k')
    assertRefused(
      r,
      [{ sql: `INSERT INTO t (id, v) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET v = ${FF61}` }],
      't',
      'v',
    )
    assertRefused(r, [{ sql: `INSERT OR REPLACE INTO t (id, v) VALUES (1, ${FF61})` }], 't', 'v')
    // Updates to valid values, and of other columns, still work with the next version.
    const { version } = r.transaction([
      { sql: "UPDATE t SET n = 2, v = 'ünï' WHERE id = 1" },
      { sql: "UPDATE k SET k = 'é'" },
    ])
    assert.equal(version, 2)
    assert.deepStrictEqual(r.query('SELECT hex(v) AS v, n FROM t'), [{ v: 'C3BC6EC3AF', n: 2n }])
    assertVersionIndexExact(r)
  })
})

describe('invalid-text - property', () => {
  it('invalid-text - a write stores TEXT bytes exactly when a fatal TextDecoder accepts them', () => {
    const r = fresh()
    const decoder = new TextDecoder('utf-8', { fatal: true })
    const byteArb = fc.oneof(
      fc.integer({ min: 0, max: 255 }),
      fc.constantFrom(0x00, 0x61, 0x7f, 0x80, 0xbf, 0xc0, 0xc2, 0xe0, 0xed, 0xa0, 0xef, 0xbd),
      fc.constantFrom(0xf0, 0xf4, 0x8f, 0x90, 0xf5, 0xff, 0xfe),
    )
    let id = 0
    fc.assert(
      // Non-key columns of TEXT, INTEGER, no and BLOB affinity: such TEXT stays TEXT in each.
      fc.property(
        fc.array(byteArb, { maxLength: 12 }),
        fc.boolean(),
        fc.constantFrom('v', 'n', 'u', 'b'),
        (bytesArr, asKey, column) => {
          const bytes = Uint8Array.from(bytesArr)
          let valid = true
          try {
            decoder.decode(bytes)
          } catch {
            valid = false // a fatal decoder throws on ill-formed UTF-8: that is the verdict
          }
          id++
          const statement: Statement = asKey
            ? {
                sql: "INSERT INTO k (k, note) VALUES (CAST(? AS TEXT), 'p') ON CONFLICT DO NOTHING",
                params: [bytes],
              }
            : {
                sql: `INSERT INTO t (id, ${column}) VALUES (?, CAST(? AS TEXT))`,
                params: [BigInt(id), bytes],
              }
          let stored = true
          try {
            r.transaction([statement])
          } catch (err) {
            assert.ok(err instanceof ReplicaError && err.code === 'INVALID_TEXT', String(err))
            stored = false
          }
          assert.equal(stored, valid, Buffer.from(bytes).toString('hex'))
          // (An INTEGER column turns TEXT that looks like a number into one: not compared.)
          if (valid && !asKey && column !== 'n') {
            const sql = `SELECT typeof(${column}) AS t, hex(${column}) AS v FROM t WHERE id = ?`
            assert.deepStrictEqual(r.query(sql, [BigInt(id)]), [
              { t: 'text', v: Buffer.from(bytes).toString('hex').toUpperCase() },
            ])
          }
        },
      ),
      { numRuns: 400 },
    )
    assertVersionIndexExact(r)
  })
})
