/**
 * Goal: an update that changes only what a column's collation ignores (case under NOCASE,
 * trailing spaces under RTRIM) is still a change: captured, given a version, and replicated
 * byte for byte (it used to look unchanged to the capture trigger, so peers kept the old bytes).
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { applySchemaSql, tempReplicas } from './helpers.ts'

const SCHEMA = `
CREATE TABLE c (id INTEGER NOT NULL PRIMARY KEY, name TEXT COLLATE NOCASE, tag TEXT COLLATE RTRIM);
`

const tmp = tempReplicas('patina-collation-')
after(() => {
  tmp.cleanup()
})

describe('crdt - collations', () => {
  it('crdt - a case-only update under NOCASE and a trailing-space update under RTRIM replicate', () => {
    const a = tmp.open('a', 1)
    const b = tmp.open('b', 2)
    applySchemaSql(a, SCHEMA)
    applySchemaSql(b, SCHEMA)
    a.transaction([{ sql: "INSERT INTO c (id, name, tag) VALUES (1, 'abc', 'x')" }])
    const first = a.transaction([{ sql: "UPDATE c SET name = 'ABC' WHERE id = 1" }])
    assert.equal(first.version, 2, 'the case-only update makes a version')
    const second = a.transaction([{ sql: "UPDATE c SET tag = 'x  ' WHERE id = 1" }])
    assert.equal(second.version, 3, 'the trailing-space update makes a version')
    const same = a.transaction([{ sql: "UPDATE c SET name = 'ABC' WHERE id = 1" }])
    assert.equal(same.version, null, 'an update to the same bytes is no change')
    for (let v = 1; v <= 3; v++) {
      const cs = a.changesFor(a.actorId, v)
      assert.ok(cs !== null)
      for (const o of b.apply([cs])) assert.equal(o.status, 'applied')
    }
    const bytes = (r: typeof a): unknown => r.query('SELECT hex(name) AS n, hex(tag) AS t FROM c')
    assert.deepStrictEqual(bytes(b), bytes(a))
    assert.deepStrictEqual(bytes(a), [{ n: '414243', t: '782020' }])
  })
})
