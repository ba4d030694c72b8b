/**
 * Reads schema files from disk: each path is a `.sql` file, or a directory whose `*.sql` files
 * are read in name order (not recursively), so `00-base.sql` runs before `10-more.sql`.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import type { Stats } from 'node:fs'
import { join } from 'node:path'
import { SchemaError } from './schema-error.ts'

export interface SchemaSource {
  readonly path: string
  readonly sql: string
}

export function loadSchemaFiles(paths: readonly string[]): SchemaSource[] {
  const sources: SchemaSource[] = []
  for (const path of paths) {
    let stats: Stats
    try {
      stats = statSync(path)
    } catch (error) {
      throw fileError(path, error)
    }
    if (!stats.isDirectory()) {
      sources.push({ path, sql: readText(path) })
      continue
    }
    let names: string[]
    try {
      names = readdirSync(path, { withFileTypes: true })
        .filter((entry) => entry.isFile() && entry.name.toLowerCase().endsWith('.sql'))
        .map((entry) => entry.name)
        // Code-unit order, not locale order: the same on every host.
        .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    } catch (error) {
      throw fileError(path, error)
    }
    if (names.length === 0) {
      throw new SchemaError(
        'SCHEMA_NO_FILES',
        `${path}: the directory holds no .sql file; put the schema in files named *.sql`,
      )
    }
    for (const name of names) {
      const file = join(path, name)
      sources.push({ path: file, sql: readText(file) })
    }
  }
  return sources
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (error) {
    throw fileError(path, error)
  }
}

function fileError(path: string, error: unknown): SchemaError {
  const code = error instanceof Error && 'code' in error ? error.code : undefined
  if (code === 'ENOENT') {
    return new SchemaError(
      'SCHEMA_FILE_NOT_FOUND',
      `${path}: no such file or directory; check the schema path`,
      { cause: error },
    )
  }
  const reason = error instanceof Error ? error.message : String(error)
  return new SchemaError('SCHEMA_FILE_UNREADABLE', `${path}: cannot read the schema: ${reason}`, {
    cause: error,
  })
}
