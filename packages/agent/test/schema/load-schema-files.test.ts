import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadSchemaFiles } from '../../src/schema/parse-schema.ts'
import { assertSchemaError } from './helpers.ts'

describe('schema - loadSchemaFiles', () => {
  let root = ''

  before(() => {
    root = mkdtempSync(join(tmpdir(), 'patina-schema-'))
    mkdirSync(join(root, 'schema'))
    writeFileSync(join(root, 'schema', '10-b.sql'), 'B')
    writeFileSync(join(root, 'schema', '02-a.SQL'), 'A')
    writeFileSync(join(root, 'schema', 'notes.txt'), 'not sql')
    mkdirSync(join(root, 'schema', 'nested'))
    writeFileSync(join(root, 'schema', 'nested', '00-deep.sql'), 'DEEP')
    mkdirSync(join(root, 'empty'))
    writeFileSync(join(root, 'empty', 'readme.md'), '')
    writeFileSync(join(root, 'single.sql'), 'S')
  })

  after(() => {
    rmSync(root, { recursive: true, force: true })
  })

  it('schema - reads a directory’s .sql files in name order, not recursively', () => {
    // Goal: only top-level *.sql files, sorted by name.
    assert.deepEqual(loadSchemaFiles([join(root, 'schema')]), [
      { path: join(root, 'schema', '02-a.SQL'), sql: 'A' },
      { path: join(root, 'schema', '10-b.sql'), sql: 'B' },
    ])
  })

  it('schema - reads files and directories in the order given', () => {
    // Goal: a file path is read as is, whatever its extension.
    const sources = loadSchemaFiles([join(root, 'single.sql'), join(root, 'schema')])
    assert.deepEqual(
      sources.map((s) => s.sql),
      ['S', 'A', 'B'],
    )
  })

  it('schema - refuses a missing path', () => {
    const missing = join(root, 'nope.sql')
    assertSchemaError(() => loadSchemaFiles([missing]), 'SCHEMA_FILE_NOT_FOUND', missing)
  })

  it('schema - refuses a directory without .sql files', () => {
    const empty = join(root, 'empty')
    assertSchemaError(() => loadSchemaFiles([empty]), 'SCHEMA_NO_FILES', empty)
  })
})
