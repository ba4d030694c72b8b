/**
 * A canonical form of an SQL fragment, for comparing two spellings of the same definition.
 *
 * Whitespace and comments are ignored, keywords and identifiers compare case-insensitively
 * (as SQLite compares them), and `name`, `"name"`, `[name]` and `` `name` `` are the same.
 * String literals stay case-sensitive: `'a'` and `'A'` are different values.
 */
import { tokenize } from './sql-tokens.ts'
import type { Token } from './sql-tokens.ts'

const PLAIN_IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]*$/

function canonicalToken(token: Token): string {
  switch (token.kind) {
    case 'word':
      return token.text.toLowerCase()
    case 'quoted': {
      const lower = token.value.toLowerCase()
      return PLAIN_IDENTIFIER.test(lower) ? lower : `"${lower.replaceAll('"', '""')}"`
    }
    case 'blob':
    case 'number':
      // Hex digits and the x/e markers are case-insensitive.
      return token.text.toLowerCase()
    case 'string':
    case 'variable':
    case 'punct':
    case 'invalid':
      return token.text
  }
}

export function normalizeSql(sql: string): string {
  return tokenize(sql).map(canonicalToken).join(' ')
}
