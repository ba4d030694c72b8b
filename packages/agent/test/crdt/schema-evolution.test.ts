/**
 * Goal: schema changes on a replica are additive, cost nothing per row and never gossip:
 * adding a nullable or defaulted column writes no metadata row and consumes no version; a
 * later write of the new column converges; destructive changes leave the database untouched.
 *
 * Method: file-backed replicas with 100,000 rows written through the engine, schema applied
 * through Replica.applySchema as the agent does.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { SchemaError } from '../../src/schema/schema-error.ts'
import { antiEntropy, applySchemaSql, snapshot, tempReplicas } from './helpers.ts'

const V1 = 'CREATE TABLE vms (id INTEGER NOT NULL PRIMARY KEY, app TEXT, cpus INTEGER);'
const V2 = `CREATE TABLE vms (id INTEGER NOT NULL PRIMARY KEY, app TEXT, cpus INTEGER,
  region TEXT, weight INTEGER NOT NULL DEFAULT 1);
CREATE INDEX vms_by_app ON vms (app);`
const ROWS = 100_000

describe('crdt - schema evolution', () => {
  const tmp = tempReplicas()
  after(() => {
    tmp.cleanup()
  })

  it('crdt - adding columns to a 100,000-row table writes no metadata and consumes no version', () => {
    const a = tmp.open('a', 1)
    applySchemaSql(a, V1)
    a.transaction([
      {
        sql:
          'WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < ?) ' +
          "INSERT INTO vms (id, app, cpus) SELECT x, 'app' || (x % 10), x % 8 FROM s",
        params: [BigInt(ROWS)],
      },
    ])
    const head = a.headOf(a.actorId)
    const clockBefore = a.query('SELECT count(*) AS n, sum(__v_app) AS v FROM "vms__patina_clock"')
    const changesBefore = a.changesFor(a.actorId, head)?.changes.length
    const dataVersion = a.db.pragma('data_version', { simple: true })

    const plan = a.applySchema([{ path: 'schema.sql', sql: V2 }])
    assert.deepStrictEqual(
      plan.newColumns.map((c) => c.column.name),
      ['region', 'weight'],
    )
    assert.equal(a.headOf(a.actorId), head, 'no version consumed')
    assert.deepStrictEqual(
      a.query('SELECT count(*) AS n, sum(__v_app) AS v FROM "vms__patina_clock"'),
      clockBefore,
    )
    assert.deepStrictEqual(
      a.query(
        'SELECT count(*) AS n FROM "vms__patina_clock" WHERE "__v_region" IS NOT NULL OR "__v_weight" IS NOT NULL',
      ),
      [{ n: 0n }],
      'no clock written for the new columns',
    )
    assert.equal(a.changesFor(a.actorId, head)?.changes.length, changesBefore)
    assert.equal(a.db.pragma('data_version', { simple: true }), dataVersion)
    assert.deepStrictEqual(a.query('SELECT region, weight FROM vms WHERE id = 7'), [
      { region: null, weight: 1n },
    ])
  })

  it('crdt - a later write of the new column converges; the old replica refuses it until its schema has it', () => {
    const a = tmp.open('a2', 1)
    const b = tmp.open('b2', 2)
    applySchemaSql(a, V1)
    applySchemaSql(b, V1)
    a.transaction([{ sql: "INSERT INTO vms (id, app) VALUES (1, 'web')" }])
    antiEntropy([a, b])
    applySchemaSql(b, V2)
    const { version } = b.transaction([
      { sql: "UPDATE vms SET region = 'ams', weight = 5 WHERE id = 1" },
    ])
    assert.equal(version, 1)
    const cs = b.changesFor(b.actorId, 1)
    assert.ok(cs !== null)
    assert.deepStrictEqual(
      cs.changes.map((c) => c.cid),
      ['region', 'weight'],
    )
    const [parked] = a.apply([cs])
    assert.equal(parked?.status, 'parked')
    assert.match(parked.reason ?? '', /unknown column "region" of table "vms"/)
    assert.equal(a.holds(b.actorId, 1), false, 'a parked change is not booked')
    assert.equal(a.covers(b.actorId, 1), true, 'but it is not asked for again either')
    // Other changes keep flowing while it is held.
    const c = tmp.open('c2', 3)
    applySchemaSql(c, V1)
    const other = c.transaction([{ sql: "INSERT INTO vms (id, app) VALUES (2, 'db')" }])
    const fromC = c.changesFor(c.actorId, other.version as number)
    assert.ok(fromC !== null)
    assert.equal(a.apply([fromC])[0]?.status, 'applied')
    applySchemaSql(a, V2)
    assert.equal(a.holds(b.actorId, 1), true, 'the parked change was applied by the schema change')
    assert.deepStrictEqual(a.bufferedVersions(), [])
    applySchemaSql(c, V2)
    antiEntropy([a, b, c])
    assert.deepStrictEqual(a.query('SELECT * FROM vms ORDER BY id'), [
      { id: 1n, app: 'web', cpus: null, region: 'ams', weight: 5n },
      { id: 2n, app: 'db', cpus: null, region: null, weight: 1n },
    ])
    assert.deepStrictEqual(snapshot(a), snapshot(b))
  })

  it('crdt - a destructive schema change is refused and leaves the database untouched', () => {
    const a = tmp.open('a3', 1)
    applySchemaSql(a, V2)
    a.transaction([{ sql: "INSERT INTO vms (id, app, region) VALUES (1, 'web', 'ams')" }])
    const before = snapshot(a)
    const schemaBefore = a.query('SELECT type, name, sql FROM sqlite_schema ORDER BY name')
    for (const bad of [
      V1, // drops two columns
      V2.replace('region TEXT', 'region INTEGER'),
      V2.replace('id INTEGER NOT NULL PRIMARY KEY', 'id TEXT NOT NULL PRIMARY KEY'),
      `${V2} CREATE TABLE extra (k TEXT NOT NULL PRIMARY KEY, v TEXT UNIQUE);`,
    ]) {
      assert.throws(
        () => a.applySchema([{ path: 'schema.sql', sql: bad }]),
        (err: unknown) => err instanceof SchemaError,
      )
      assert.deepStrictEqual(snapshot(a), before)
      assert.deepStrictEqual(
        a.query('SELECT type, name, sql FROM sqlite_schema ORDER BY name'),
        schemaBefore,
      )
    }
  })

  it('crdt - applying the same schema again is a no-op, and a new table joins replication', () => {
    const a = tmp.open('a4', 1)
    applySchemaSql(a, V2)
    const again = a.applySchema([{ path: 'schema.sql', sql: V2 }])
    assert.equal(again.newTables.length + again.newColumns.length, 0)
    applySchemaSql(a, `${V2}\nCREATE TABLE hosts (id TEXT NOT NULL PRIMARY KEY, up INTEGER);`)
    assert.deepStrictEqual(a.tableNames().sort(), ['hosts', 'vms'])
    const { version } = a.transaction([{ sql: "INSERT INTO hosts (id, up) VALUES ('h1', 1)" }])
    assert.equal(a.changesFor(a.actorId, version ?? 0)?.changes.length, 1)
  })

  it('crdt - a parked change survives an upgrade from a database whose column says held', () => {
    const a = tmp.open('park-a', 1)
    const b = tmp.open('park-b', 2)
    applySchemaSql(a, V1)
    applySchemaSql(b, V2)
    b.transaction([{ sql: "INSERT INTO vms (id, app, region) VALUES (7, 'web', 'ams')" }])
    const cs = b.changesFor(b.actorId, 1)
    assert.ok(cs !== null)
    assert.equal(a.apply([cs])[0]?.status, 'parked')
    // What an older Patina wrote: the bookkeeping column was named `held`.
    a.db.exec('ALTER TABLE __patina_partials RENAME COLUMN parked TO held')
    a.close()
    const reopened = tmp.open('park-a', 1)
    assert.deepStrictEqual(
      reopened.bufferedVersions().map((v) => v.parked),
      [true],
      'the parked version is still there',
    )
    applySchemaSql(reopened, V2)
    assert.deepStrictEqual(reopened.query('SELECT id, region FROM vms'), [
      { id: 7n, region: 'ams' },
    ])
  })
})
