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

/** The JS functions the capture triggers call (registered on the writer by Replica). */
export const CAPTURE_FUNCTIONS = [
  'patina_capture',
  'patina_dbv',
  'patina_seq',
  'patina_seqs',
] as const
