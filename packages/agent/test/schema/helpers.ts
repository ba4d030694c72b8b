/** Shared assertions and fixtures for the schema tests. */
import Database from 'better-sqlite3'
import assert from 'node:assert/strict'
import type { SchemaModel } from '../../src/schema/model.ts'
import { parseSchema } from '../../src/schema/parse-schema.ts'
import { readCurrentSchema } from '../../src/schema/read-schema.ts'
import { SchemaError } from '../../src/schema/schema-error.ts'
import type { SchemaErrorCode } from '../../src/schema/schema-error.ts'

/** Asserts that `fn` throws a SchemaError with `code` whose message contains every fragment. */
export function assertSchemaError(
  fn: () => unknown,
  code: SchemaErrorCode,
  ...fragments: readonly string[]
): SchemaError {
  let caught: unknown
  try {
    fn()
  } catch (error) {
    caught = error
  }
  assert.ok(caught instanceof SchemaError, `expected a SchemaError, got ${String(caught)}`)
  assert.equal(caught.name, 'SchemaError')
  assert.equal(caught.code, code, caught.message)
  for (const fragment of fragments) {
    assert.ok(caught.message.includes(fragment), `"${caught.message}" lacks "${fragment}"`)
  }
  return caught
}

/** Parses one schema file named `schema.sql`. */
export function parseOne(sql: string): SchemaModel {
  return parseSchema([{ path: 'schema.sql', sql }])
}

export const isPatinaInternal = (name: string): boolean => name.toLowerCase().includes('__patina')

/** The schema of a live database built by running `sql`, as readCurrentSchema sees it. */
export function readFromSql(sql: string): SchemaModel {
  const db = new Database(':memory:')
  try {
    db.exec(sql)
    return readCurrentSchema(db, isPatinaInternal)
  } finally {
    db.close()
  }
}
