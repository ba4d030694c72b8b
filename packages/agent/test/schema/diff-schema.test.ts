import Database from 'better-sqlite3'
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { diffSchema } from '../../src/schema/diff-schema.ts'
import { isEmptyPlan } from '../../src/schema/model.ts'
import type { SchemaModel, SchemaPlan } from '../../src/schema/model.ts'
import { readCurrentSchema } from '../../src/schema/read-schema.ts'
import { assertSchemaError, isPatinaInternal, parseOne, readFromSql } from './helpers.ts'

const VMS = `CREATE TABLE vms (
  id TEXT NOT NULL PRIMARY KEY,
  name TEXT,
  cpus INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX vms_name ON vms (name);`

/** A plan reduced to names, for compact assertions. */
function summary(plan: SchemaPlan): Record<string, string[]> {
  return {
    newTables: plan.newTables.map((t) => t.name),
    newColumns: plan.newColumns.map((c) => `${c.table}.${c.column.name}`),
    dropIndexes: plan.dropIndexes.map((i) => i.name),
    createIndexes: plan.createIndexes.map((i) => i.name),
  }
}

/**
 * Applies a plan the way the agent would (new tables, ADD COLUMN, drop then create indexes)
 * to a database holding rows, and returns the schema read back.
 */
function applyPlan(db: Database.Database, plan: SchemaPlan): SchemaModel {
  db.transaction(() => {
    for (const table of plan.newTables) db.exec(table.sql)
    for (const { table, column } of plan.newColumns) {
      db.exec(`ALTER TABLE "${table}" ADD COLUMN ${column.definitionSql}`)
    }
    for (const index of plan.dropIndexes) db.exec(`DROP INDEX "${index.name}"`)
    for (const index of plan.createIndexes) db.exec(index.sql)
  })()
  return readCurrentSchema(db, isPatinaInternal)
}

describe('schema - readCurrentSchema', () => {
  it('schema - skips SQLite objects, autoindexes and Patina internals', () => {
    // Goal: only user tables and their explicit indexes are read.
    const current = readFromSql(`
      CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, name TEXT);
      CREATE INDEX vms_name ON vms (name);
      CREATE TABLE counters (id INTEGER PRIMARY KEY AUTOINCREMENT);
      CREATE TABLE vms__patina_clock (key BLOB NOT NULL, col TEXT NOT NULL, PRIMARY KEY (key, col));
      CREATE INDEX vms_clock_by_col ON vms__patina_clock (col);
      CREATE INDEX __patina_vms_x ON vms (name, id);
      CREATE VIEW v AS SELECT 1;`)
    assert.deepEqual([...current.tables.keys()], ['vms', 'counters'])
    assert.deepEqual([...current.indexes.keys()], ['vms_name'])
    assert.equal(current.tables.get('vms')?.source, undefined)
  })

  it('schema - reads columns added by ALTER TABLE with their definitions', () => {
    // Goal: definitionSql comes from the stored CREATE TABLE text, which ADD COLUMN updates.
    const current = readFromSql(`CREATE TABLE t (id TEXT NOT NULL PRIMARY KEY);
      ALTER TABLE t ADD COLUMN v TEXT /* why */ DEFAULT 'x' /* trailing */;`)
    assert.deepEqual(current.tables.get('t')?.columns[1], {
      name: 'v',
      type: 'TEXT',
      notNull: false,
      defaultSql: "'x'",
      pkIndex: 0,
      definitionSql: "v TEXT /* why */ DEFAULT 'x'",
    })
  })
})

describe('schema - diffSchema plans additive changes', () => {
  it('schema - gives an empty plan for identical schemas', () => {
    // Goal: nothing to do when the database matches the files.
    assert.ok(isEmptyPlan(diffSchema(readFromSql(VMS), parseOne(VMS))))
  })

  it('schema - gives an empty plan when the files only change formatting', () => {
    // Goal: whitespace, comments, keyword case, identifier quoting and IF NOT EXISTS do not count.
    const reformatted = `create table if not exists "VMS" ( -- machines
        [id] text not null primary key, "name" text,
        CPUS integer not null default 1 );
      create index if not exists VMS_NAME on vms(NAME);`
    assert.ok(isEmptyPlan(diffSchema(readFromSql(VMS), parseOne(reformatted))))
  })

  it('schema - plans new tables, new columns and new indexes', () => {
    // Goal: every addition appears once, in the files' order.
    const desired = parseOne(`CREATE TABLE vms (
        id TEXT NOT NULL PRIMARY KEY,
        region TEXT,
        name TEXT,
        cpus INTEGER NOT NULL DEFAULT 1,
        state TEXT NOT NULL DEFAULT 'stopped',
        mem INTEGER DEFAULT -1,
        tag BLOB DEFAULT x'00'
      );
      CREATE INDEX vms_name ON vms (name);
      CREATE INDEX vms_region ON vms (region);
      CREATE TABLE hosts (id TEXT NOT NULL PRIMARY KEY, addr TEXT);`)
    const plan = diffSchema(readFromSql(VMS), desired)
    assert.deepEqual(summary(plan), {
      newTables: ['hosts'],
      newColumns: ['vms.region', 'vms.state', 'vms.mem', 'vms.tag'],
      dropIndexes: [],
      createIndexes: ['vms_region'],
    })
    assert.equal(plan.newTables[0], desired.tables.get('hosts'))
    assert.equal(plan.newColumns[1]?.column.definitionSql, "state TEXT NOT NULL DEFAULT 'stopped'")
  })

  it('schema - drops indexes removed from the files and recreates changed ones', () => {
    // Goal: a changed index is in both lists; a removed one only in dropIndexes.
    const current = readFromSql(`${VMS}
      CREATE INDEX vms_cpus ON vms (cpus);
      CREATE INDEX vms_old ON vms (cpus, name);`)
    const desired = parseOne(`CREATE TABLE vms (
        id TEXT NOT NULL PRIMARY KEY, name TEXT, cpus INTEGER NOT NULL DEFAULT 1);
      CREATE INDEX vms_name ON vms (name);
      CREATE INDEX vms_cpus ON vms (cpus DESC);`)
    assert.deepEqual(summary(diffSchema(current, desired)), {
      newTables: [],
      newColumns: [],
      dropIndexes: ['vms_cpus', 'vms_old'],
      createIndexes: ['vms_cpus'],
    })
  })

  it('schema - produces a plan that applies to a table with rows and converges', () => {
    // Goal: the planned SQL runs on a populated database, and a second diff is empty.
    const db = new Database(':memory:')
    try {
      db.exec(VMS)
      db.exec("INSERT INTO vms (id, name) VALUES ('a', 'one'), ('b', 'two')")
      const desired = parseOne(`CREATE TABLE vms (
          id TEXT NOT NULL PRIMARY KEY, name TEXT,
          cpus INTEGER NOT NULL DEFAULT 1,
          state TEXT NOT NULL DEFAULT 'stopped' CHECK (state IN ('stopped', 'running')),
          note TEXT COLLATE NOCASE);
        CREATE INDEX vms_name ON vms (name, state);
        CREATE TABLE hosts (id TEXT NOT NULL PRIMARY KEY);`)
      const plan = diffSchema(readCurrentSchema(db, isPatinaInternal), desired)
      assert.deepEqual(summary(plan), {
        newTables: ['hosts'],
        newColumns: ['vms.state', 'vms.note'],
        dropIndexes: ['vms_name'],
        createIndexes: ['vms_name'],
      })
      const after = applyPlan(db, plan)
      assert.ok(isEmptyPlan(diffSchema(after, desired)))
      assert.deepEqual(db.prepare("SELECT state FROM vms WHERE id = 'a'").get(), {
        state: 'stopped',
      })
    } finally {
      db.close()
    }
  })

  it('schema - adopts an existing table whose columns were appended in a different order', () => {
    // Goal: a column added at the end of the database's table matches the file's position.
    const current = readFromSql(`CREATE TABLE t (id TEXT NOT NULL PRIMARY KEY, b TEXT);
      ALTER TABLE t ADD COLUMN a TEXT;`)
    const desired = parseOne('CREATE TABLE t (id TEXT NOT NULL PRIMARY KEY, a TEXT, b TEXT)')
    assert.ok(isEmptyPlan(diffSchema(current, desired)))
  })
})

describe('schema - diffSchema refuses destructive changes', () => {
  const base = 'CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, name TEXT, cpus INTEGER DEFAULT 1)'
  const refuse =
    (desiredSql: string, currentSql = base) =>
    () =>
      diffSchema(readFromSql(currentSql), parseOne(desiredSql))

  it('schema - refuses dropping a table', () => {
    assertSchemaError(
      refuse('CREATE TABLE hosts (id TEXT NOT NULL PRIMARY KEY)'),
      'SCHEMA_DESTRUCTIVE_CHANGE',
      'table "vms"',
      'dropping a table is refused',
    )
  })

  it('schema - refuses dropping a column', () => {
    assertSchemaError(
      refuse('CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, cpus INTEGER DEFAULT 1)'),
      'SCHEMA_DESTRUCTIVE_CHANGE',
      'schema.sql:1:',
      'table "vms"',
      'column "name"',
      'dropping a column',
    )
  })

  it('schema - refuses retyping a column', () => {
    assertSchemaError(
      refuse('CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, name BLOB, cpus INTEGER DEFAULT 1)'),
      'SCHEMA_DESTRUCTIVE_CHANGE',
      'table "vms"',
      'column "name"',
      'from TEXT to BLOB',
    )
  })

  it('schema - refuses making a column NOT NULL', () => {
    assertSchemaError(
      refuse(
        'CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, name TEXT, cpus INTEGER NOT NULL DEFAULT 1)',
      ),
      'SCHEMA_DESTRUCTIVE_CHANGE',
      'table "vms"',
      'column "cpus"',
      'from nullable to NOT NULL',
    )
  })

  it('schema - refuses making a NOT NULL column nullable', () => {
    assertSchemaError(
      refuse(
        'CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, name TEXT, cpus INTEGER DEFAULT 1)',
        'CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, name TEXT, cpus INTEGER NOT NULL DEFAULT 1)',
      ),
      'SCHEMA_DESTRUCTIVE_CHANGE',
      'column "cpus"',
      'from NOT NULL to nullable',
    )
  })

  it('schema - refuses changing a DEFAULT', () => {
    assertSchemaError(
      refuse('CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, name TEXT, cpus INTEGER DEFAULT 2)'),
      'SCHEMA_DESTRUCTIVE_CHANGE',
      'table "vms"',
      'column "cpus"',
      'DEFAULT from 1 to 2',
    )
  })

  it('schema - refuses adding a DEFAULT to an existing column', () => {
    assertSchemaError(
      refuse(
        "CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, name TEXT DEFAULT '', cpus INTEGER DEFAULT 1)",
      ),
      'SCHEMA_DESTRUCTIVE_CHANGE',
      'column "name"',
      "DEFAULT from (none) to ''",
    )
  })

  it('schema - refuses moving a column into the primary key', () => {
    assertSchemaError(
      refuse(
        "CREATE TABLE vms (id TEXT NOT NULL, name TEXT NOT NULL DEFAULT '', cpus INTEGER DEFAULT 1, PRIMARY KEY (id, name))",
        "CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, name TEXT NOT NULL DEFAULT '', cpus INTEGER DEFAULT 1)",
      ),
      'SCHEMA_DESTRUCTIVE_CHANGE',
      'table "vms"',
      'column "name"',
      'changing the primary key is refused',
    )
  })

  it('schema - refuses reordering a composite primary key', () => {
    const current = 'CREATE TABLE t (a TEXT NOT NULL, b TEXT NOT NULL, PRIMARY KEY (a, b))'
    assertSchemaError(
      refuse('CREATE TABLE t (a TEXT NOT NULL, b TEXT NOT NULL, PRIMARY KEY (b, a))', current),
      'SCHEMA_DESTRUCTIVE_CHANGE',
      'table "t"',
      'column "a"',
      'from primary-key column 1 to primary-key column 2',
    )
  })

  it('schema - refuses a new column that joins the primary key', () => {
    assertSchemaError(
      refuse(
        'CREATE TABLE t (a TEXT NOT NULL, b TEXT NOT NULL, PRIMARY KEY (a, b))',
        'CREATE TABLE t (a TEXT NOT NULL PRIMARY KEY)',
      ),
      'SCHEMA_DESTRUCTIVE_CHANGE',
      'table "t"',
      'primary key changes from (a) to (a, b)',
    )
  })

  it('schema - refuses changing a column constraint such as COLLATE', () => {
    assertSchemaError(
      refuse(
        'CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, name TEXT COLLATE NOCASE, cpus INTEGER DEFAULT 1)',
      ),
      'SCHEMA_DESTRUCTIVE_CHANGE',
      'table "vms"',
      'column "name"',
      'COLLATE NOCASE',
    )
  })

  it('schema - refuses changing a table constraint', () => {
    assertSchemaError(
      refuse(
        'CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, name TEXT, cpus INTEGER DEFAULT 1, CHECK (cpus > 0))',
      ),
      'SCHEMA_DESTRUCTIVE_CHANGE',
      'table "vms"',
      'CHECK (cpus > 0)',
    )
  })

  it('schema - refuses changing table options', () => {
    assertSchemaError(
      refuse(
        'CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, name TEXT, cpus INTEGER DEFAULT 1) WITHOUT ROWID',
      ),
      'SCHEMA_DESTRUCTIVE_CHANGE',
      'table "vms"',
      'WITHOUT ROWID',
    )
  })

  it('schema - refuses a new NOT NULL column without a non-NULL DEFAULT', () => {
    // parseSchema refuses this shape too; a desired model read from a database does not.
    const current = readFromSql(base)
    const desired = readFromSql(
      'CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, name TEXT, cpus INTEGER DEFAULT 1, mem INT NOT NULL)',
    )
    assertSchemaError(
      () => diffSchema(current, desired),
      'SCHEMA_COLUMN_NOT_ADDABLE',
      'table "vms"',
      'column "mem"',
      'give it a DEFAULT',
    )
  })

  it('schema - refuses a new column defaulting to CURRENT_TIMESTAMP', () => {
    assertSchemaError(
      refuse(
        'CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, name TEXT, cpus INTEGER DEFAULT 1, at TEXT DEFAULT CURRENT_TIMESTAMP)',
      ),
      'SCHEMA_COLUMN_NOT_ADDABLE',
      'schema.sql:1:',
      'table "vms"',
      'column "at"',
      'CURRENT_TIMESTAMP',
    )
  })

  it('schema - refuses a new column with a parenthesised DEFAULT', () => {
    assertSchemaError(
      refuse(
        'CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, name TEXT, cpus INTEGER DEFAULT 1, mem INT DEFAULT (1024 * 4))',
      ),
      'SCHEMA_COLUMN_NOT_ADDABLE',
      'table "vms"',
      'column "mem"',
      'expression in parentheses',
    )
  })

  it('schema - accepts CURRENT_TIMESTAMP and parenthesised defaults in a new table', () => {
    // Goal: the ADD COLUMN limits apply to new columns only, not to CREATE TABLE.
    const plan = diffSchema(
      readFromSql(base),
      parseOne(`${base};
        CREATE TABLE log (id TEXT NOT NULL PRIMARY KEY, at TEXT DEFAULT CURRENT_TIMESTAMP, n INT DEFAULT (1 + 1));`),
    )
    assert.deepEqual(summary(plan).newTables, ['log'])
  })
})
