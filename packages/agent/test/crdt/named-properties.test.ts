/**
 * Goal: each merge rule a user depends on, stated as a named scenario (the properties of
 * research/crdt-swim.md section 6): idempotence, deletes and causal length, tie-breaks, rows
 * unknown locally, dense versions, primary-key updates. Several tests run once with the
 * mechanism on (must pass) and once with it switched off (must detect the loss).
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { isDeepStrictEqual } from 'node:util'
import type { Change, FullChangeset } from '../../src/crdt/changes.ts'
import { packPk } from '../../src/crdt/pk-codec.ts'
import { Replica, type ReplicaOptions } from '../../src/crdt/replica.ts'
import { antiEntropy, applySchemaSql, actorId, snapshot, tempReplicas } from './helpers.ts'

const SCHEMA = `
CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, a TEXT, b INTEGER NOT NULL DEFAULT 7, c);
CREATE TABLE k (id TEXT NOT NULL PRIMARY KEY);
`

function open(byte: number, options: Omit<ReplicaOptions, 'actorId'> = {}): Replica {
  const r = Replica.open(':memory:', { ...options, actorId: actorId(byte) })
  applySchemaSql(r, SCHEMA)
  return r
}

function write(r: Replica, sql: string, ...params: unknown[]): FullChangeset {
  const { version } = r.transaction([{ sql, params: params as never }])
  assert.ok(version !== null, `"${sql}" changed something`)
  const cs = r.changesFor(r.actorId, version)
  assert.ok(cs !== null)
  return cs
}

function rows(r: Replica, sql = 'SELECT * FROM t ORDER BY id'): unknown[] {
  return r.query(sql)
}

describe('crdt - idempotence', () => {
  it('crdt - applying the same cells twice changes nothing', () => {
    const a = open(1)
    const b = open(2)
    const cs = write(a, 'INSERT INTO t (id, a, c) VALUES (1, ?, ?)', 'x', 1.5)
    b.apply([cs])
    const once = snapshot(b)
    // Same cells under another version number: bookkeeping cannot skip them, the merge must.
    const again = b.apply([{ ...cs, version: cs.version + 100 }])
    assert.deepStrictEqual(
      again[0]?.won,
      cs.changes.map(() => false),
    )
    assert.deepStrictEqual(snapshot(b), once)
    // And the ordinary duplicate is skipped by bookkeeping.
    assert.equal(b.apply([cs])[0]?.applied, false)
  })
})

describe('crdt - deletes and causal length', () => {
  it('crdt - a delete beats a concurrent update of the same life', () => {
    const a = open(1)
    const b = open(2)
    b.apply([write(a, 'INSERT INTO t (id, a) VALUES (1, ?)', 'x')])
    const del = write(a, 'DELETE FROM t WHERE id = 1')
    const upd = write(b, "UPDATE t SET a = 'y', b = 8 WHERE id = 1")
    a.apply([upd])
    b.apply([del])
    assert.deepStrictEqual(rows(a), [])
    assert.deepStrictEqual(rows(b), [])
    assert.deepStrictEqual(snapshot(a), snapshot(b))
  })

  for (const disable of [false, true]) {
    it(`crdt - a late update of an old life is ignored after the tombstone${disable ? ' (causal length off: detected)' : ''}`, () => {
      const a = open(1)
      const b = open(2, disable ? { disable: { causalLength: true } } : {})
      const ins = write(a, 'INSERT INTO t (id, a) VALUES (1, ?)', 'x')
      const upd = write(a, "UPDATE t SET a = 'old life' WHERE id = 1")
      const del = write(a, 'DELETE FROM t WHERE id = 1')
      const reins = write(a, "INSERT INTO t (id, a) VALUES (1, 'new life')")
      b.apply([ins, del, reins])
      const outcome = b.apply([upd])
      const ignored = outcome[0]?.won.every((w) => !w) === true
      const newLife = isDeepStrictEqual(rows(b), [{ id: 1n, a: 'new life', b: 7n, c: null }])
      if (disable) assert.ok(!ignored || !newLife, 'switching causal length off must be detected')
      else {
        assert.ok(ignored)
        assert.ok(newLife)
        assert.deepStrictEqual(snapshot(b), snapshot(a))
      }
    })
  }

  it('crdt - delete then re-insert gives causal length 3 everywhere, old-life values lose', () => {
    const a = open(1)
    const b = open(2)
    const c = open(3)
    const first = write(a, "INSERT INTO t (id, a, b, c) VALUES (1, 'v1', 1, 'keep?')")
    for (let i = 0; i < 3; i++) write(a, `UPDATE t SET a = 'v1-${i}' WHERE id = 1`)
    b.apply([first])
    write(a, 'DELETE FROM t WHERE id = 1')
    write(a, "INSERT INTO t (id, a) VALUES (1, 'v2')")
    antiEntropy([a, b, c])
    for (const r of [a, b, c]) {
      assert.deepStrictEqual(rows(r), [{ id: 1n, a: 'v2', b: 7n, c: null }])
      assert.equal(r.query('SELECT __cl FROM "t__patina_clock" WHERE id = 1')[0]?.__cl, 3n)
    }
    assert.deepStrictEqual(snapshot(b), snapshot(a))
    assert.deepStrictEqual(snapshot(c), snapshot(a))
  })

  it('crdt - concurrent deletes converge, and tombstones survive a restart', () => {
    const tmp = tempReplicas()
    after(() => {
      tmp.cleanup()
    })
    const a = tmp.open('a', 1)
    const b = tmp.open('b', 2)
    applySchemaSql(a, SCHEMA)
    applySchemaSql(b, SCHEMA)
    b.apply([write(a, "INSERT INTO t (id, a) VALUES (1, 'x')")])
    const lateUpdate = write(a, "UPDATE t SET a = 'late' WHERE id = 1")
    const da = write(a, 'DELETE FROM t WHERE id = 1')
    const db = write(b, 'DELETE FROM t WHERE id = 1')
    a.apply([db])
    b.apply([da])
    assert.deepStrictEqual(snapshot(a), snapshot(b))
    b.close()
    const b2 = Replica.open(`${tmp.dir}/b.db`)
    assert.deepStrictEqual(
      b2.apply([lateUpdate])[0]?.won,
      lateUpdate.changes.map(() => false),
    )
    assert.deepStrictEqual(rows(b2), [])
    b2.close()
  })
})

describe('crdt - tie-breaks', () => {
  for (const disable of [false, true]) {
    it(`crdt - equal col_versions: the larger value wins by type order INTEGER > REAL > TEXT > BLOB > NULL${disable ? ' (tie-break off: detected)' : ''}`, () => {
      const options = disable ? { disable: { tieBreak: true } } : {}
      const a = open(1, options)
      const b = open(2, options)
      const base = write(a, 'INSERT INTO t (id) VALUES (1)')
      b.apply([base])
      const fromA = write(a, 'UPDATE t SET c = ? WHERE id = 1', 'text')
      const fromB = write(b, 'UPDATE t SET c = ? WHERE id = 1', 2.5)
      a.apply([fromB])
      b.apply([fromA])
      const ca = rows(a, 'SELECT c FROM t')
      const cb = rows(b, 'SELECT c FROM t')
      const converged = isDeepStrictEqual(ca, cb)
      if (disable) assert.ok(!converged, 'switching tie-breaks off must be detected')
      else {
        assert.deepStrictEqual(ca, [{ c: 2.5 }])
        assert.deepStrictEqual(snapshot(a), snapshot(b))
      }
    })
  }

  it('crdt - equal values: the larger actor id ends in the clock on every replica', () => {
    const a = open(1)
    const b = open(9)
    b.apply([write(a, 'INSERT INTO t (id) VALUES (1)')])
    const fromA = write(a, "UPDATE t SET a = 'same' WHERE id = 1")
    const fromB = write(b, "UPDATE t SET a = 'same' WHERE id = 1")
    a.apply([fromB])
    b.apply([fromA])
    assert.deepStrictEqual(snapshot(a), snapshot(b))
    const site = a.query(
      'SELECT s.site_id AS id FROM "t__patina_clock" c JOIN __patina_sites s ON s.ordinal = c."__s_a"',
    )[0]?.id as Buffer
    assert.equal(site[0], 9)
  })

  it('crdt - 1 and 1.0 are different values (INTEGER wins over REAL)', () => {
    const a = open(1)
    const b = open(2)
    b.apply([write(a, 'INSERT INTO t (id) VALUES (1)')])
    a.apply([write(b, 'UPDATE t SET c = ? WHERE id = 1', 1.0)])
    b.apply([write(a, 'UPDATE t SET c = ? WHERE id = 1', 1n)])
    for (const r of [a, b]) {
      assert.deepStrictEqual(rows(r, 'SELECT c, typeof(c) AS ty FROM t'), [
        { c: 1n, ty: 'integer' },
      ])
    }
  })

  it('crdt - a higher col_version wins regardless of value', () => {
    const a = open(1)
    const b = open(2)
    b.apply([write(a, "INSERT INTO t (id, a) VALUES (1, 'a')")])
    const twice = [
      write(a, "UPDATE t SET a = 'b' WHERE id = 1"),
      write(a, "UPDATE t SET a = 'c' WHERE id = 1"),
    ]
    const once = write(b, "UPDATE t SET a = 'zzz' WHERE id = 1")
    a.apply([once])
    b.apply(twice)
    assert.deepStrictEqual(rows(a, 'SELECT a FROM t'), [{ a: 'c' }])
    assert.deepStrictEqual(snapshot(a), snapshot(b))
  })
})

describe('crdt - rows unknown locally', () => {
  it('crdt - a single column change creates the row with defaults', () => {
    const a = open(1)
    const b = open(2)
    write(a, "INSERT INTO t (id, a) VALUES (5, 'x')")
    const upd = write(a, "UPDATE t SET a = 'y' WHERE id = 5")
    assert.equal(upd.changes.length, 1)
    b.apply([upd])
    assert.deepStrictEqual(rows(b), [{ id: 5n, a: 'y', b: 7n, c: null }])
  })

  it('crdt - a delete for an unknown row leaves a tombstone that blocks later life-1 changes', () => {
    const a = open(1)
    const b = open(2)
    const ins = write(a, "INSERT INTO t (id, a) VALUES (5, 'x')")
    const del = write(a, 'DELETE FROM t WHERE id = 5')
    b.apply([del])
    assert.deepStrictEqual(
      b.apply([ins])[0]?.won,
      ins.changes.map(() => false),
    )
    assert.deepStrictEqual(rows(b), [])
    assert.deepStrictEqual(snapshot(b), snapshot(a))
  })
})

describe('crdt - versions', () => {
  it('crdt - local versions are dense; a no-op or failed transaction consumes none', () => {
    const a = open(1)
    assert.equal(a.transaction([{ sql: "INSERT INTO t (id, a) VALUES (1, 'x')" }]).version, 1)
    assert.equal(a.transaction([{ sql: "UPDATE t SET a = 'x' WHERE id = 1" }]).version, null)
    assert.equal(a.transaction([{ sql: 'DELETE FROM t WHERE id = 99' }]).version, null)
    assert.throws(() =>
      a.transaction([
        { sql: "INSERT INTO t (id, a) VALUES (2, 'y')" },
        { sql: 'INSERT INTO t (id) VALUES (1)' },
      ]),
    )
    assert.deepStrictEqual(rows(a, 'SELECT id FROM t'), [{ id: 1n }])
    assert.equal(a.transaction([{ sql: "UPDATE t SET a = 'z' WHERE id = 1" }]).version, 2)
    assert.equal(a.headOf(a.actorId), 2)
  })

  it('crdt - one transaction is one version whose seqs are 0..last', () => {
    const a = open(1)
    const { version } = a.transaction([
      { sql: "INSERT INTO t (id, a) VALUES (1, 'x')" },
      { sql: "INSERT INTO t (id, a) VALUES (2, 'y')" },
      { sql: "INSERT INTO k (id) VALUES ('p')" },
    ])
    const cs = a.changesFor(a.actorId, version ?? 0)
    assert.ok(cs !== null)
    assert.deepStrictEqual(
      cs.changes.map((c) => c.seq),
      cs.changes.map((_, i) => i),
    )
    assert.equal(cs.lastSeq, cs.changes.length - 1)
    assert.equal(cs.changes.length, 3 + 3 + 1)
  })

  for (const disable of [false, true]) {
    it(`crdt - a skipped version is a gap until it arrives${disable ? ' (gap bookkeeping off: detected)' : ''}`, () => {
      const a = open(1)
      const b = open(2, disable ? { disable: { gaps: true } } : {})
      const v1 = write(a, "INSERT INTO t (id, a) VALUES (1, 'x')")
      write(a, "INSERT INTO t (id, a) VALUES (2, 'y')")
      const v3 = write(a, "INSERT INTO t (id, a) VALUES (3, 'z')")
      b.apply([v3, v1])
      const state = b.originStates().find((o) => o.head === 3)
      const gapSeen = state !== undefined && isDeepStrictEqual(state.gaps, [[2, 2]])
      antiEntropy([a, b])
      const converged = isDeepStrictEqual(snapshot(a), snapshot(b))
      if (disable)
        assert.ok(!gapSeen || !converged, 'switching gap bookkeeping off must be detected')
      else {
        assert.ok(gapSeen)
        assert.ok(converged)
        assert.equal(b.holds(a.actorId, 2), true)
      }
    })
  }

  it('crdt - a version whose cells were all overwritten is served empty and still booked', () => {
    const a = open(1)
    const b = open(2)
    write(a, "INSERT INTO t (id, a) VALUES (1, 'x')")
    write(a, "UPDATE t SET a = 'y' WHERE id = 1")
    write(a, "INSERT OR REPLACE INTO t (id, a) VALUES (1, 'z')")
    const first = a.changesFor(a.actorId, 1)
    assert.deepStrictEqual(first?.changes, [])
    antiEntropy([a, b])
    assert.equal(b.holds(a.actorId, 1), true)
    assert.deepStrictEqual(snapshot(a), snapshot(b))
  })
})

describe('crdt - primary-key updates', () => {
  it('crdt - a key change travels as delete plus full insert, also to replicas that had the old row', () => {
    const a = open(1)
    const b = open(2)
    const c = open(3)
    const ins = write(a, "INSERT INTO t (id, a, b, c) VALUES (1, 'x', 3, X'00ff')")
    b.apply([ins])
    const move = write(a, 'UPDATE t SET id = 2 WHERE id = 1')
    const cells = move.changes.map((ch: Change) => [ch.cid, ch.cl])
    assert.deepStrictEqual(cells, [
      ['-1', 2],
      ['a', 1],
      ['b', 1],
      ['c', 1],
    ])
    b.apply([move])
    antiEntropy([a, b, c])
    for (const r of [a, b, c]) {
      assert.deepStrictEqual(rows(r), [{ id: 2n, a: 'x', b: 3n, c: Buffer.from([0, 255]) }])
    }
    assert.deepStrictEqual(snapshot(b), snapshot(a))
    assert.deepStrictEqual(snapshot(c), snapshot(a))
    assert.deepStrictEqual(move.changes[0]?.pk, packPk([1n]))
  })
})
