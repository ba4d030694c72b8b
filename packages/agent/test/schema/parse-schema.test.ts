import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { parseSchema } from '../../src/schema/parse-schema.ts'
import { assertSchemaError, parseOne, readFromSql } from './helpers.ts'

describe('schema - parseSchema accepts', () => {
  it('schema - reads tables, columns and keys into the model', () => {
    // Goal: every field of the model comes out as SQLite understood the file.
    const sql = `-- machines
CREATE TABLE IF NOT EXISTS Vms (
  id TEXT NOT NULL PRIMARY KEY,
  "host name" VARCHAR( 64 ),
  cpus INTEGER NOT NULL DEFAULT 1,
  price REAL DEFAULT (0.5),
  note TEXT DEFAULT 'n/a' COLLATE NOCASE
);

CREATE TABLE pairs (a INTEGER NOT NULL, b TEXT NOT NULL, v BLOB, PRIMARY KEY (b, a)) WITHOUT ROWID;`
    const model = parseOne(sql)
    const vms = model.tables.get('vms')
    assert.ok(vms !== undefined)
    assert.equal(vms.name, 'Vms')
    assert.equal(vms.sql, sql.slice(sql.indexOf('CREATE TABLE IF'), sql.indexOf(';')))
    assert.deepEqual(vms.source, { path: 'schema.sql', line: 2 })
    assert.deepEqual(vms.pk, ['id'])
    assert.deepEqual(vms.columns, [
      {
        name: 'id',
        type: 'TEXT',
        notNull: true,
        defaultSql: null,
        pkIndex: 1,
        definitionSql: 'id TEXT NOT NULL PRIMARY KEY',
      },
      {
        name: 'host name',
        type: 'VARCHAR( 64 )',
        notNull: false,
        defaultSql: null,
        pkIndex: 0,
        definitionSql: '"host name" VARCHAR( 64 )',
      },
      {
        name: 'cpus',
        type: 'INTEGER',
        notNull: true,
        defaultSql: '1',
        pkIndex: 0,
        definitionSql: 'cpus INTEGER NOT NULL DEFAULT 1',
      },
      {
        name: 'price',
        type: 'REAL',
        notNull: false,
        defaultSql: '0.5',
        pkIndex: 0,
        definitionSql: 'price REAL DEFAULT (0.5)',
      },
      {
        name: 'note',
        type: 'TEXT',
        notNull: false,
        defaultSql: "'n/a'",
        pkIndex: 0,
        definitionSql: "note TEXT DEFAULT 'n/a' COLLATE NOCASE",
      },
    ])
    const pairs = model.tables.get('pairs')
    assert.deepEqual(pairs?.pk, ['b', 'a'])
    assert.deepEqual(
      pairs.columns.map((c) => c.pkIndex),
      [2, 1, 0],
    )
    assert.deepEqual([...model.tables.keys()], ['vms', 'pairs'])
    assert.equal(model.indexes.size, 0)
  })

  it('schema - accepts an INTEGER PRIMARY KEY declared NOT NULL', () => {
    // Goal: the explicit NOT NULL satisfies the key rule for rowid aliases.
    const model = parseOne('CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, v TEXT)')
    assert.deepEqual(model.tables.get('t')?.pk, ['id'])
  })

  it('schema - stores index SQL as SQLite stores it in sqlite_schema', () => {
    // Goal: IndexDef.sql compares equal with what readCurrentSchema reads from a live database.
    const tables = 'CREATE TABLE t (id TEXT NOT NULL PRIMARY KEY, v TEXT, w TEXT);'
    const indexes = `CREATE INDEX IF NOT EXISTS t_v ON t (v) WHERE v IS NOT NULL;
      CREATE INDEX t_vw ON T (v, w DESC);`
    const model = parseOne(tables + indexes)
    const live = readFromSql(tables + indexes)
    assert.deepEqual([...model.indexes.values()], [...live.indexes.values()])
    assert.deepEqual(model.indexes.get('t_v'), {
      name: 't_v',
      table: 't',
      sql: 'CREATE INDEX t_v ON t (v) WHERE v IS NOT NULL',
    })
  })

  it('schema - builds the same tables as readCurrentSchema on a live database', () => {
    // Goal: the two readers agree field for field (source aside).
    const sql = `CREATE TABLE a (k TEXT NOT NULL, n INT NOT NULL DEFAULT -1, PRIMARY KEY (n, k));
      CREATE TABLE b ([id] BLOB NOT NULL PRIMARY KEY, "x" ANY) STRICT;`
    const parsed = parseOne(sql)
    const live = readFromSql(sql)
    for (const [key, table] of parsed.tables) {
      const { source, ...withoutSource } = table
      assert.ok(source !== undefined)
      assert.deepEqual(withoutSource, live.tables.get(key))
    }
  })

  it('schema - removes an index dropped later in the files', () => {
    // Goal: DROP INDEX of an index created earlier takes it out of the model.
    const model = parseSchema([
      {
        path: '00.sql',
        sql: 'CREATE TABLE t (id TEXT NOT NULL PRIMARY KEY, v TEXT); CREATE INDEX i ON t (v);',
      },
      { path: '10.sql', sql: 'DROP INDEX i; CREATE INDEX j ON t (v);' },
    ])
    assert.deepEqual([...model.indexes.keys()], ['j'])
  })

  it('schema - redefines an index after dropping it', () => {
    // Goal: DROP INDEX then CREATE INDEX with the same name keeps the new definition.
    const model = parseOne(`CREATE TABLE t (id TEXT NOT NULL PRIMARY KEY, v TEXT, w TEXT);
      CREATE INDEX i ON t (v); DROP INDEX IF EXISTS i; CREATE INDEX i ON t (w);`)
    assert.equal(model.indexes.get('i')?.sql, 'CREATE INDEX i ON t (w)')
  })

  it('schema - ignores DROP INDEX IF EXISTS of an index the files never create', () => {
    // Goal: the statement is a no-op; diffSchema drops indexes missing from the files anyway.
    const model = parseOne(
      'CREATE TABLE t (id TEXT NOT NULL PRIMARY KEY); DROP INDEX IF EXISTS old;',
    )
    assert.equal(model.indexes.size, 0)
  })

  it('schema - accepts the same table and index defined twice identically', () => {
    // Goal: repeating a definition (modulo spacing, case, IF NOT EXISTS) is harmless.
    const model = parseSchema([
      {
        path: 'a.sql',
        sql: 'CREATE TABLE t (id TEXT NOT NULL PRIMARY KEY); CREATE INDEX i ON t (id);',
      },
      {
        path: 'b.sql',
        sql: 'create table if not exists T ( ID text not null primary key ); create index if not exists I on t(id);',
      },
    ])
    assert.deepEqual([...model.tables.keys()], ['t'])
    assert.equal(model.tables.get('t')?.source?.path, 'a.sql')
    assert.deepEqual([...model.indexes.keys()], ['i'])
  })

  it('schema - accepts an index written before its table', () => {
    // Goal: tables are created first, so file order between tables and indexes does not matter.
    const model = parseSchema([
      { path: '00-indexes.sql', sql: 'CREATE INDEX t_v ON t (v);' },
      { path: '10-tables.sql', sql: 'CREATE TABLE t (id TEXT NOT NULL PRIMARY KEY, v TEXT);' },
    ])
    assert.equal(model.indexes.get('t_v')?.table, 't')
  })

  it('schema - accepts an empty schema', () => {
    // Goal: no files or only comments give an empty model.
    assert.equal(parseSchema([]).tables.size, 0)
    assert.equal(parseOne('-- nothing yet\n').tables.size, 0)
  })
})

describe('schema - parseSchema refuses', () => {
  it('schema - refuses a table without a primary key', () => {
    assertSchemaError(
      () => parseOne('CREATE TABLE vms (id TEXT NOT NULL, name TEXT)'),
      'SCHEMA_NO_PRIMARY_KEY',
      'schema.sql:1:',
      'table "vms"',
      'PRIMARY KEY',
    )
  })

  it('schema - refuses a nullable primary key', () => {
    const error = assertSchemaError(
      () => parseOne('CREATE TABLE vms (id TEXT PRIMARY KEY, name TEXT)'),
      'SCHEMA_NULLABLE_PRIMARY_KEY',
      'schema.sql',
      'table "vms"',
      'column "id"',
      'declare it NOT NULL',
    )
    assert.equal(
      error.message,
      'schema.sql:1: table "vms": primary-key column "id" is nullable; declare it NOT NULL',
    )
  })

  it('schema - refuses an INTEGER PRIMARY KEY without NOT NULL', () => {
    // SQLite would turn a NULL key into a local rowid, different on each host.
    assertSchemaError(
      () => parseOne('CREATE TABLE vms (id INTEGER PRIMARY KEY, name TEXT)'),
      'SCHEMA_NULLABLE_PRIMARY_KEY',
      'table "vms"',
      'column "id"',
    )
  })

  it('schema - refuses a nullable column of a composite primary key', () => {
    assertSchemaError(
      () => parseOne('CREATE TABLE vms (a TEXT NOT NULL, b TEXT, PRIMARY KEY (a, b))'),
      'SCHEMA_NULLABLE_PRIMARY_KEY',
      'table "vms"',
      'column "b"',
    )
  })

  it('schema - refuses a NOT NULL column without DEFAULT', () => {
    assertSchemaError(
      () => parseOne('CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, name TEXT NOT NULL)'),
      'SCHEMA_NOT_NULL_WITHOUT_DEFAULT',
      'schema.sql',
      'table "vms"',
      'column "name"',
    )
  })

  it('schema - refuses a NOT NULL column with DEFAULT NULL', () => {
    assertSchemaError(
      () =>
        parseOne(
          'CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, name TEXT NOT NULL DEFAULT NULL)',
        ),
      'SCHEMA_NOT_NULL_WITHOUT_DEFAULT',
      'table "vms"',
      'column "name"',
    )
  })

  it('schema - refuses a UNIQUE column constraint', () => {
    assertSchemaError(
      () => parseOne('CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, name TEXT UNIQUE)'),
      'SCHEMA_UNIQUE',
      'schema.sql',
      'table "vms"',
      'column "name"',
    )
  })

  it('schema - refuses a UNIQUE table constraint', () => {
    assertSchemaError(
      () =>
        parseOne(
          'CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, a TEXT, b TEXT, CONSTRAINT ab UNIQUE (a, b))',
        ),
      'SCHEMA_UNIQUE',
      'table "vms"',
      'columns "a", "b"',
    )
  })

  it('schema - refuses a UNIQUE index', () => {
    assertSchemaError(
      () =>
        parseSchema([
          {
            path: 'tables.sql',
            sql: 'CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, name TEXT);',
          },
          { path: 'indexes.sql', sql: '\nCREATE UNIQUE INDEX vms_name ON vms (name);' },
        ]),
      'SCHEMA_UNIQUE',
      'indexes.sql:2:',
      'table "vms"',
      'index "vms_name"',
      'column "name"',
    )
  })

  it('schema - refuses a column-level foreign key', () => {
    assertSchemaError(
      () =>
        parseOne(`CREATE TABLE hosts (id TEXT NOT NULL PRIMARY KEY);
          CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, host TEXT REFERENCES hosts (id));`),
      'SCHEMA_FOREIGN_KEY',
      'schema.sql:2:',
      'table "vms"',
      'column "host"',
      '"hosts"("id")',
    )
  })

  it('schema - refuses a table-level foreign key', () => {
    assertSchemaError(
      () =>
        parseOne(`CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, host TEXT,
          FOREIGN KEY (host) REFERENCES hosts)`),
      'SCHEMA_FOREIGN_KEY',
      'table "vms"',
      'column "host"',
    )
  })

  it('schema - refuses AUTOINCREMENT on a column', () => {
    assertSchemaError(
      () => parseOne('CREATE TABLE vms (id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, v TEXT)'),
      'SCHEMA_AUTOINCREMENT',
      'schema.sql',
      'table "vms"',
      'column "id"',
    )
  })

  it('schema - refuses AUTOINCREMENT in a PRIMARY KEY constraint', () => {
    assertSchemaError(
      () => parseOne('CREATE TABLE vms (id INTEGER NOT NULL, PRIMARY KEY (id AUTOINCREMENT))'),
      'SCHEMA_AUTOINCREMENT',
      'table "vms"',
      'column "id"',
    )
  })

  it('schema - refuses a TEMP table', () => {
    assertSchemaError(
      () => parseOne('CREATE TEMP TABLE scratch (id TEXT NOT NULL PRIMARY KEY)'),
      'SCHEMA_TEMP_TABLE',
      'schema.sql:1:',
      '"scratch"',
    )
  })

  it('schema - refuses a TEMPORARY table', () => {
    assertSchemaError(
      () => parseOne('CREATE TEMPORARY TABLE IF NOT EXISTS scratch (id TEXT NOT NULL PRIMARY KEY)'),
      'SCHEMA_TEMP_TABLE',
      '"scratch"',
    )
  })

  it('schema - refuses CREATE TABLE AS SELECT', () => {
    assertSchemaError(
      () => parseOne('CREATE TABLE copy AS SELECT 1 AS id'),
      'SCHEMA_CREATE_TABLE_AS',
      'schema.sql',
      'table "copy"',
    )
  })

  it('schema - refuses a virtual generated column', () => {
    assertSchemaError(
      () =>
        parseOne(
          'CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, mem INT, gb INT AS (mem / 1024))',
        ),
      'SCHEMA_GENERATED_COLUMN',
      'schema.sql',
      'table "vms"',
      'column "gb"',
    )
  })

  it('schema - refuses a stored generated column', () => {
    assertSchemaError(
      () =>
        parseOne(
          'CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, mem INT, gb INT GENERATED ALWAYS AS (mem / 1024) STORED)',
        ),
      'SCHEMA_GENERATED_COLUMN',
      'table "vms"',
      'column "gb"',
    )
  })

  it('schema - refuses a reserved table name', () => {
    assertSchemaError(
      () => parseOne('CREATE TABLE __meta (id TEXT NOT NULL PRIMARY KEY)'),
      'SCHEMA_RESERVED_NAME',
      'schema.sql',
      'table "__meta"',
    )
    assertSchemaError(
      () => parseOne('CREATE TABLE "vms__PATINA_clock" (id TEXT NOT NULL PRIMARY KEY)'),
      'SCHEMA_RESERVED_NAME',
      'table "vms__PATINA_clock"',
    )
  })

  it('schema - refuses a reserved column name', () => {
    assertSchemaError(
      () => parseOne('CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, __version INT)'),
      'SCHEMA_RESERVED_NAME',
      'table "vms"',
      'column "__version"',
    )
  })

  it('schema - refuses a reserved index name', () => {
    assertSchemaError(
      () =>
        parseOne(
          'CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, v TEXT); CREATE INDEX vms__patina_v ON vms (v);',
        ),
      'SCHEMA_RESERVED_NAME',
      'index "vms__patina_v"',
    )
  })

  it('schema - refuses a table defined twice differently', () => {
    assertSchemaError(
      () =>
        parseSchema([
          { path: 'a.sql', sql: 'CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY);' },
          {
            path: 'b.sql',
            sql: 'CREATE TABLE IF NOT EXISTS vms (id TEXT NOT NULL PRIMARY KEY, v TEXT);',
          },
        ]),
      'SCHEMA_DUPLICATE_TABLE',
      'b.sql:1:',
      'a.sql:1',
      'table "vms"',
    )
  })

  it('schema - refuses an index defined twice differently', () => {
    assertSchemaError(
      () =>
        parseOne(`CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY, a TEXT, b TEXT);
          CREATE INDEX vms_x ON vms (a);
          CREATE INDEX IF NOT EXISTS vms_x ON vms (b);`),
      'SCHEMA_DUPLICATE_INDEX',
      'schema.sql:3:',
      'index "vms_x"',
    )
  })

  it('schema - refuses an index on an unknown table', () => {
    assertSchemaError(
      () => parseOne('CREATE INDEX vms_name ON vms (name)'),
      'SCHEMA_UNKNOWN_TABLE',
      'schema.sql',
      'index "vms_name"',
      'table "vms"',
    )
  })

  it('schema - refuses DROP INDEX of an index the files never create', () => {
    assertSchemaError(
      () => parseOne('CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY); DROP INDEX vms_name;'),
      'SCHEMA_UNKNOWN_INDEX',
      'schema.sql',
      '"vms_name"',
    )
  })

  it('schema - refuses a schema-qualified name', () => {
    assertSchemaError(
      () => parseOne('CREATE TABLE main.vms (id TEXT NOT NULL PRIMARY KEY)'),
      'SCHEMA_QUALIFIED_NAME',
      'schema.sql',
      '"main"."vms"',
    )
  })

  it('schema - reports SQLite syntax errors with the file and line', () => {
    const error = assertSchemaError(
      () =>
        parseSchema([
          { path: 'bad.sql', sql: '\n\nCREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY,)' },
        ]),
      'SCHEMA_SYNTAX_ERROR',
      'bad.sql:3:',
      'syntax error',
    )
    assert.ok(error.cause instanceof Error)
  })

  it('schema - reports an unknown column in an index as a syntax error', () => {
    assertSchemaError(
      () =>
        parseOne('CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY); CREATE INDEX i ON vms (nope);'),
      'SCHEMA_SYNTAX_ERROR',
      'schema.sql:1:',
      'nope',
    )
  })

  it('schema - reports a malformed CREATE TABLE header through SQLite', () => {
    assertSchemaError(() => parseOne('CREATE TABLE (id INT)'), 'SCHEMA_SYNTAX_ERROR', 'schema.sql')
  })

  const unsupported: [string, string][] = [
    ['INSERT', "INSERT INTO vms VALUES ('a')"],
    ['CREATE VIEW', 'CREATE VIEW v AS SELECT 1'],
    ['CREATE TEMP VIEW', 'CREATE TEMP VIEW v AS SELECT 1'],
    ['CREATE TRIGGER', 'CREATE TRIGGER tr AFTER INSERT ON vms BEGIN SELECT 1; SELECT 2; END'],
    ['CREATE VIRTUAL TABLE', 'CREATE VIRTUAL TABLE f USING fts5(body)'],
    ['PRAGMA', 'PRAGMA journal_mode = wal'],
    ['ALTER TABLE', 'ALTER TABLE vms ADD COLUMN v TEXT'],
    ['DROP TABLE', 'DROP TABLE vms'],
    ['SELECT', 'SELECT 1'],
    ['a statement starting with "("', '(1)'],
  ]
  for (const [kind, statement] of unsupported) {
    it(`schema - refuses ${kind} statements`, () => {
      const sql = `CREATE TABLE vms (id TEXT NOT NULL PRIMARY KEY);\n${statement};`
      assertSchemaError(
        () => parseSchema([{ path: 'app.sql', sql }]),
        'SCHEMA_UNSUPPORTED_STATEMENT',
        `app.sql:2: ${kind} is not allowed`,
      )
    })
  }
})
