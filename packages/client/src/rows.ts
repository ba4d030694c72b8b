/** NDJSON events of the streaming routes, decoded by @patina/protocol, and typed rows. */
import { decodeEvent, WireFormatError, type WireEvent } from '@patina/protocol'
import { InvalidStatementError, ProtocolError, QueryError } from './errors.ts'
import type { IntegerMode, SqlValue } from './values.ts'

/** One NDJSON line as its event; ProtocolError (naming `url`) if it is not a valid event. */
export function decodeLine(line: string, integers: IntegerMode, url: string): WireEvent {
  try {
    return decodeEvent(line, integers)
  } catch (err) {
    if (err instanceof WireFormatError) {
      throw new ProtocolError(`${url} sent ${err.message}`, { cause: err })
    }
    throw err
  }
}

/** The QueryError for an error event: the agent's message and code. */
export function streamError(e: { error: string; code: string | null }, url: string): QueryError {
  return new QueryError(e.error, url, { agentCode: e.code })
}

/** The column names of a `columns` event; refuses duplicates (rows are keyed by name). */
export function readColumns(names: readonly string[]): string[] {
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
  return [...names]
}

/** A row object from the cells of a `row` or `change` event, in column order. */
export function makeRow(
  columns: readonly string[] | null,
  cells: readonly SqlValue[],
  url: string,
): Record<string, SqlValue> {
  if (columns === null) throw new ProtocolError(`${url} sent a row before its columns`)
  if (cells.length !== columns.length) {
    throw new ProtocolError(
      `${url} sent a row with ${cells.length} cells for ${columns.length} columns`,
    )
  }
  const row: Record<string, SqlValue> = {}
  for (let i = 0; i < columns.length; i++) {
    const name = columns[i] as string
    const value = cells[i] as SqlValue
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
