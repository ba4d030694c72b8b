/**
 * @packageDocumentation
 * The wire contract between the Patina agent and its clients (Corrosion's v1 HTTP API plus
 * Patina's error codes): value codec, JSON, NDJSON events, header names, error codes. No I/O
 * and no Node imports: it runs in browsers too.
 */
export const PROTOCOL_VERSION = 1
export * from './errors.ts'
export * from './events.ts'
export * from './headers.ts'
export * from './json.ts'
export * from './ndjson.ts'
export * from './values.ts'
export * from './wire-format-error.ts'
