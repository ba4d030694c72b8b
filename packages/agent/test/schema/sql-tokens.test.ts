import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { normalizeSql } from '../../src/schema/normalize-sql.ts'
import { lineAt, splitStatements, tokenize } from '../../src/schema/sql-tokens.ts'
import { splitCreateTable } from '../../src/schema/table-sql.ts'

const kindsAndValues = (sql: string): [string, string][] =>
  tokenize(sql).map((t) => [t.kind, t.value])

describe('schema - tokenizer', () => {
  it('schema - tokenizes identifiers in every quoting style', () => {
    // Goal: each identifier style yields its unquoted value and escapes are undone.
    assert.deepEqual(kindsAndValues('plain "dq ""x""" [br acket] `bq``x` _u$1 été'), [
      ['word', 'plain'],
      ['quoted', 'dq "x"'],
      ['quoted', 'br acket'],
      ['quoted', 'bq`x'],
      ['word', '_u$1'],
      ['word', 'été'],
    ])
  })

  it('schema - tokenizes string, blob and number literals', () => {
    // Goal: literals are single tokens, with '' unescaped in strings.
    assert.deepEqual(kindsAndValues("'it''s' x'00ff' X'AB' 1 1.5 .5 1e10 2.5E-3 0x1F 1_000"), [
      ['string', "it's"],
      ['blob', "x'00ff'"],
      ['blob', "X'AB'"],
      ['number', '1'],
      ['number', '1.5'],
      ['number', '.5'],
      ['number', '1e10'],
      ['number', '2.5E-3'],
      ['number', '0x1F'],
      ['number', '1_000'],
    ])
  })

  it('schema - tokenizes punctuation, operators and variables', () => {
    // Goal: multi-character operators come out whole.
    assert.deepEqual(
      tokenize('a->>b || c <= ? ?2 :n @m $v != (1,2);').map((t) => t.text),
      [
        'a',
        '->>',
        'b',
        '||',
        'c',
        '<=',
        '?',
        '?2',
        ':n',
        '@m',
        '$v',
        '!=',
        '(',
        '1',
        ',',
        '2',
        ')',
        ';',
      ],
    )
  })

  it('schema - skips comments and keeps source offsets', () => {
    // Goal: comments make no token and offsets slice the original text.
    const sql = "-- head\nCREATE /* inner ; */ TABLE t -- tail ;\n('a;b')"
    const tokens = tokenize(sql)
    assert.deepEqual(
      tokens.map((t) => t.text),
      ['CREATE', 'TABLE', 't', '(', "'a;b'", ')'],
    )
    for (const token of tokens) assert.equal(sql.slice(token.start, token.end), token.text)
  })

  it('schema - marks unterminated literals as invalid and accepts an open block comment', () => {
    // Goal: the tokenizer never throws; SQLite reports the error later.
    assert.deepEqual(kindsAndValues("a 'open"), [
      ['word', 'a'],
      ['invalid', "'open"],
    ])
    assert.deepEqual(kindsAndValues('a "open'), [
      ['word', 'a'],
      ['invalid', '"open'],
    ])
    assert.deepEqual(kindsAndValues('a /* open'), [['word', 'a']])
    assert.deepEqual(kindsAndValues('a # b'), [
      ['word', 'a'],
      ['invalid', '#'],
      ['word', 'b'],
    ])
  })
})

describe('schema - statement splitter', () => {
  it('schema - splits at semicolons but not inside strings, identifiers or comments', () => {
    // Goal: only top-level semicolons end a statement.
    const sql = `CREATE TABLE "a;b" (x TEXT DEFAULT 'x;y'); -- c;d
      /* e;f */ CREATE INDEX i ON [a;b] (x);;  ;
      DROP INDEX i`
    const statements = splitStatements(sql)
    assert.deepEqual(
      statements.map((s) => s.text),
      [`CREATE TABLE "a;b" (x TEXT DEFAULT 'x;y')`, 'CREATE INDEX i ON [a;b] (x)', 'DROP INDEX i'],
    )
    for (const s of statements) assert.equal(sql.slice(s.start, s.end), s.text)
  })

  it('schema - keeps comments inside a statement and drops the ones around it', () => {
    // Goal: the statement text is exactly what lies between its first and last token.
    const [statement] = splitStatements(
      '/* lead */ CREATE TABLE t ( -- note\n id INT ) /* trail */;',
    )
    assert.equal(statement?.text, 'CREATE TABLE t ( -- note\n id INT )')
  })

  it('schema - keeps a trigger body with semicolons and CASE ... END in one statement', () => {
    // Goal: the whole trigger is one statement, and the statement after it is separate.
    const trigger = `CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN
        UPDATE t SET v = CASE WHEN new.v IS NULL THEN 'x;' ELSE new.v END WHERE id = new.id;
        SELECT CASE 1 WHEN 1 THEN CASE 2 WHEN 2 THEN 3 END END;
      END`
    const statements = splitStatements(`${trigger};\nCREATE TABLE u (id INT);`)
    assert.deepEqual(
      statements.map((s) => s.text),
      [trigger, 'CREATE TABLE u (id INT)'],
    )
  })

  it('schema - ends a trigger with a broken header at its first semicolon', () => {
    // Goal: a trigger without BEGIN does not swallow the rest of the file.
    const statements = splitStatements('CREATE TRIGGER tr; CREATE TABLE u (id INT)')
    assert.deepEqual(
      statements.map((s) => s.text),
      ['CREATE TRIGGER tr', 'CREATE TABLE u (id INT)'],
    )
  })

  it('schema - takes the last statement without a semicolon and skips empty ones', () => {
    // Goal: a file need not end with a semicolon; blank statements vanish.
    assert.deepEqual(
      splitStatements(' ; -- only a comment\n ; CREATE TABLE t (x)').map((s) => s.text),
      ['CREATE TABLE t (x)'],
    )
    assert.deepEqual(splitStatements(''), [])
  })

  it('schema - counts lines from 1', () => {
    // Goal: lineAt gives the line of an offset for messages.
    const sql = 'a\nb\n\nc'
    assert.equal(lineAt(sql, 0), 1)
    assert.equal(lineAt(sql, sql.indexOf('b')), 2)
    assert.equal(lineAt(sql, sql.indexOf('c')), 4)
  })
})

describe('schema - CREATE TABLE slicer', () => {
  it('schema - slices column definitions, table constraints and options', () => {
    // Goal: top-level commas split parts; nested commas and constraint keywords are handled.
    const parts = splitCreateTable(`CREATE TABLE IF NOT EXISTS "t" (
      "id" TEXT NOT NULL, -- the key
      amount DECIMAL(10, 2) DEFAULT (1 + 2) CHECK (amount IN (1, 2)),
      [note] TEXT COLLATE NOCASE,
      CONSTRAINT pk PRIMARY KEY (id, amount),
      CHECK (note <> ',')
    ) WITHOUT ROWID, STRICT`)
    assert.ok(parts !== null)
    assert.deepEqual(
      parts.columns.map((c) => [c.name, c.sql]),
      [
        ['id', '"id" TEXT NOT NULL'],
        ['amount', 'amount DECIMAL(10, 2) DEFAULT (1 + 2) CHECK (amount IN (1, 2))'],
        ['note', '[note] TEXT COLLATE NOCASE'],
      ],
    )
    assert.deepEqual(
      parts.constraints.map((c) => c.sql),
      ['CONSTRAINT pk PRIMARY KEY (id, amount)', "CHECK (note <> ',')"],
    )
    assert.equal(parts.options, 'WITHOUT ROWID, STRICT')
  })

  it('schema - has no column list for CREATE TABLE AS SELECT', () => {
    // Goal: the slicer does not mistake the SELECT's parentheses for a column list.
    assert.equal(splitCreateTable('CREATE TABLE t AS SELECT (1) AS x'), null)
  })
})

describe('schema - SQL normalisation', () => {
  it('schema - ignores whitespace, comments, keyword case and identifier quoting', () => {
    // Goal: two spellings of one definition compare equal.
    assert.equal(
      normalizeSql('CREATE INDEX "I" ON [T] ( x /* c */ )'),
      normalizeSql('create index i on t(X)'),
    )
  })

  it('schema - keeps string literals case-sensitive', () => {
    // Goal: 'a' and 'A' are different defaults.
    assert.notEqual(normalizeSql("'a'"), normalizeSql("'A'"))
    assert.equal(normalizeSql("x'AB'"), normalizeSql("X'ab'"))
  })
})
