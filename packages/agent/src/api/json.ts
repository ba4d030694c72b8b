/**
 * JSON for the API, from @patina/protocol (the one codec the agent and its clients share):
 * request bodies parse with every integer a bigint (INTEGER) and every other number a number
 * (REAL); values go out exactly (`encodeValue`, `encodeRow`); response objects with `writeJson`.
 */
import {
  encodeCells,
  parseJson as parseWire,
  writeJson,
  type JsonObject,
  type JsonValue,
} from '@patina/protocol'
import type { SqlValue } from '../crdt/values.ts'

export { encodeValue, writeTyped } from '@patina/protocol'
export type { JsonObject, JsonValue }

/** The body is not JSON: answered 400 `MALFORMED_JSON`. */
export class JsonBodyError extends Error {
  override readonly name = 'JsonBodyError'
  readonly code = 'MALFORMED_JSON'
}

/** Parses a request body (integers as bigint); JsonBodyError when it is not JSON. */
export function parseJson(text: string): JsonValue {
  try {
    return parseWire(text, 'bigint')
  } catch (err) {
    throw new JsonBodyError(`malformed JSON: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    })
  }
}

/** A row's values as JSON text: blobs as arrays of bytes, as Corrosion writes them. */
export function encodeRow(values: readonly SqlValue[]): string {
  return encodeCells(values)
}

/** JSON text of a response object that may hold bigints (written exactly). */
export function stringify(value: unknown): string {
  return writeJson(value)
}
