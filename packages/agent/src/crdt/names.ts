/**
 * Names of Patina's internal objects. Everything internal starts with `__patina` or contains
 * `__patina`, and schema files may not create such names (nor anything starting with `__`).
 */

/** SQL identifier quoting: always double quotes, with embedded quotes doubled. */
export function q(identifier: string): string {
  return `"${identifier.replaceAll('"', '""')}"`
}

export function isInternalName(name: string): boolean {
  const lower = name.toLowerCase()
  return lower.startsWith('__patina') || lower.includes('__patina') || lower.startsWith('sqlite_')
}

export const clockTable = (table: string): string => `${table}__patina_clock`
export const versionIndexTable = (table: string): string => `${table}__patina_vidx`
export const triggerName = (table: string, what: string): string => `${table}__patina_${what}`

/** Clock columns of one data column in the clock table. */
export const cellVersionCol = (col: string): string => `__v_${col}`
export const cellSiteCol = (col: string): string => `__s_${col}`
export const cellDbvCol = (col: string): string => `__d_${col}`
export const cellSeqCol = (col: string): string => `__q_${col}`

/** The id Corrosion and cr-sqlite give the row sentinel (causal length) in changes. */
export const SENTINEL_CID = '-1'

/**
 * The function every capture trigger and every guard trigger of an internal table calls. It
 * exists only on the agent's writer connection, so a write from anywhere else (the sqlite3 CLI,
 * another program) fails before it changes anything, with SQLite's message
 * `no such function: write_through_the_patina_agent`: the name is the instruction.
 */
export const CAPTURE_FUNCTION = 'write_through_the_patina_agent'

/** The name CAPTURE_FUNCTION had before; triggers of older databases call it until regenerated. */
export const LEGACY_CAPTURE_FUNCTION = 'patina_capture'

/** Prefix of the guard triggers' names (`<table>__patina_guard_<op>`). */
export const GUARD_MARK = '__patina_guard_'

/** The JS functions the capture triggers call (registered on the writer by Replica). */
export const CAPTURE_FUNCTIONS = [
  CAPTURE_FUNCTION,
  LEGACY_CAPTURE_FUNCTION,
  'patina_dbv',
  'patina_seq',
  'patina_seqs',
] as const
