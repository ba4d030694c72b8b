/** NDJSON events of the query routes, parsed and turned into typed rows. */
import { InvalidStatementError, ProtocolError } from './errors.ts'
import { decodeCell, parseJson, type IntegerMode, type JsonValue, type SqlValue } from './values.ts'

export type JsonObject = { [key: string]: JsonValue }

/** One NDJSON line as an object; ProtocolError if it is not JSON or not an object. */
export function parseEvent(line: string, integers: IntegerMode, url: string): JsonObject {
  let v: JsonValue
  try {
    v = parseJson(line, integers)
  } catch (err) {
    throw new ProtocolError(`${url} sent a line that is not JSON: ${line.slice(0, 200)}`, {
      cause: err,
    })
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new ProtocolError(`${url} sent a line that is not a JSON object: ${line.slice(0, 200)}`)
  }
  return v
}

/** The column names of a `columns` event; refuses duplicates (rows are keyed by name). */
export function readColumns(v: JsonValue | undefined, url: string): string[] {
  if (!Array.isArray(v) || !v.every((c) => typeof c === 'string')) {
    throw new ProtocolError(`${url} sent "columns" that is not an array of names`)
  }
  const names: string[] = v
  const seen = new Set<string>()
  for (const name of names) {
    if (seen.has(name)) {
      throw new InvalidStatementError(
        `the column name "${name}" appears twice in the result; rows are objects keyed by ` +
          `column name, so give each column its own name (e.g. SELECT a.${name} AS a_${name}, ` +
          `b.${name} AS b_${name} ...)`,
      )
    }
    seen.add(name)
  }
  return names
}

/** A row object from the cells of a `row` or `change` event, in column order. */
export function makeRow(
  columns: readonly string[] | null,
  cells: JsonValue | undefined,
  url: string,
): Record<string, SqlValue> {
  if (columns === null) throw new ProtocolError(`${url} sent a row before its columns`)
  if (!Array.isArray(cells) || cells.length !== columns.length) {
    throw new ProtocolError(
      `${url} sent a row with ${Array.isArray(cells) ? cells.length : 'no'} cells for ${columns.length} columns`,
    )
  }
  const row: Record<string, SqlValue> = {}
  for (let i = 0; i < columns.length; i++) {
    const name = columns[i] as string
    const value = decodeCell(cells[i] ?? null, `column "${name}"`)
    if (name === '__proto__') {
      Object.defineProperty(row, name, {
        value,
        enumerable: true,
        writable: true,
        configurable: true,
      })
    } else {
      row[name] = value
    }
  }
  return row
}
