/**
 * A small SQLite tokenizer, just enough to classify schema statements and slice them.
 *
 * It never decides whether SQL is valid: SQLite does that when the statement is executed. So it
 * is lenient: an unterminated literal or an unknown character becomes an `invalid` token that
 * SQLite will reject later with its own message. Comments and whitespace produce no token; every
 * token keeps its source offsets so callers can slice the original text, comments included.
 */

export type TokenKind =
  /** A bare identifier or keyword: `CREATE`, `vms`. */
  | 'word'
  /** A quoted identifier: `"a b"`, `[a b]`, `` `a b` ``. */
  | 'quoted'
  /** A string literal: `'it''s'`. */
  | 'string'
  /** A blob literal: `x'00ff'`. */
  | 'blob'
  | 'number'
  /** A bound parameter: `?`, `?1`, `:name`, `@name`, `$name`. */
  | 'variable'
  /** Operators and punctuation: `(`, `)`, `,`, `;`, `.`, `||`, `<=`, ... */
  | 'punct'
  /** An unterminated literal or a character SQLite does not know. */
  | 'invalid'

export interface Token {
  readonly kind: TokenKind
  /** The source text of the token. */
  readonly text: string
  /** For `quoted` and `string`: the unquoted, unescaped value. Otherwise equal to `text`. */
  readonly value: string
  /** Offset of the first character in the source. */
  readonly start: number
  /** Offset just past the last character. */
  readonly end: number
}

/** One statement of a script, without its terminating semicolon. */
export interface Statement {
  /** The source from the first token to the last (inner comments kept, outer ones not). */
  readonly text: string
  readonly start: number
  readonly end: number
  readonly tokens: readonly Token[]
}

// Longest first, so that `->>` wins over `->` and `->` over `-`.
const MULTI_CHAR_PUNCT = ['->>', '->', '||', '<=', '>=', '==', '!=', '<>', '<<', '>>']
const SINGLE_CHAR_PUNCT = '(),;.+-*/%&|~<>=!'

function isIdentifierStart(ch: string): boolean {
  return /[A-Za-z_]/.test(ch) || ch.charCodeAt(0) >= 0x80
}

function isIdentifierPart(ch: string): boolean {
  return /[A-Za-z0-9_$]/.test(ch) || ch.charCodeAt(0) >= 0x80
}

function isDigit(ch: string | undefined): boolean {
  return ch !== undefined && ch >= '0' && ch <= '9'
}

/** Splits SQL into tokens, skipping whitespace and comments. */
export function tokenize(sql: string): Token[] {
  const tokens: Token[] = []
  let i = 0
  const at = (offset: number): string => sql.charAt(offset)

  const push = (kind: TokenKind, start: number, end: number, value?: string): void => {
    const text = sql.slice(start, end)
    tokens.push({ kind, text, value: value ?? text, start, end })
  }

  // Reads a literal closed by `close`, where a doubled `close` stands for one (SQL's escape).
  const readQuoted = (start: number, close: string, doubling: boolean): [number, string | null] => {
    let value = ''
    let j = start + 1
    while (j < sql.length) {
      const ch = at(j)
      if (ch === close) {
        if (doubling && at(j + 1) === close) {
          value += close
          j += 2
          continue
        }
        return [j + 1, value]
      }
      value += ch
      j++
    }
    return [sql.length, null]
  }

  while (i < sql.length) {
    const ch = at(i)
    const next = at(i + 1)
    const start = i

    if (/\s/.test(ch)) {
      i++
    } else if (ch === '-' && next === '-') {
      const newline = sql.indexOf('\n', i)
      i = newline === -1 ? sql.length : newline + 1
    } else if (ch === '/' && next === '*') {
      // SQLite accepts a block comment left open at the end of the input.
      const close = sql.indexOf('*/', i + 2)
      i = close === -1 ? sql.length : close + 2
    } else if ((ch === 'x' || ch === 'X') && next === "'") {
      const [end, value] = readQuoted(i + 1, "'", false)
      push(value === null ? 'invalid' : 'blob', start, end)
      i = end
    } else if (ch === "'") {
      const [end, value] = readQuoted(i, "'", true)
      push(value === null ? 'invalid' : 'string', start, end, value ?? undefined)
      i = end
    } else if (ch === '"' || ch === '`') {
      const [end, value] = readQuoted(i, ch, true)
      push(value === null ? 'invalid' : 'quoted', start, end, value ?? undefined)
      i = end
    } else if (ch === '[') {
      const [end, value] = readQuoted(i, ']', false)
      push(value === null ? 'invalid' : 'quoted', start, end, value ?? undefined)
      i = end
    } else if (isDigit(ch) || (ch === '.' && isDigit(next))) {
      i = readNumberEnd(sql, i)
      push('number', start, i)
    } else if (isIdentifierStart(ch)) {
      i++
      while (i < sql.length && isIdentifierPart(at(i))) i++
      push('word', start, i)
    } else if (ch === '?') {
      i++
      while (isDigit(at(i))) i++
      push('variable', start, i)
    } else if ((ch === ':' || ch === '@' || ch === '$') && isIdentifierPart(next)) {
      i++
      while (i < sql.length && isIdentifierPart(at(i))) i++
      push('variable', start, i)
    } else {
      const multi = MULTI_CHAR_PUNCT.find((p) => sql.startsWith(p, i))
      if (multi !== undefined) {
        i += multi.length
        push('punct', start, i)
      } else {
        i++
        push(SINGLE_CHAR_PUNCT.includes(ch) ? 'punct' : 'invalid', start, i)
      }
    }
  }
  return tokens
}

/**
 * Offset just past a numeric literal starting at `i`: decimal with optional fraction and
 * exponent, or hexadecimal, with `_` digit separators. Letters glued to the number are taken
 * too (`12abc`), so that SQLite sees and rejects the whole thing.
 */
function readNumberEnd(sql: string, i: number): number {
  let j = i
  if (sql.charAt(j) === '0' && /[xX]/.test(sql.charAt(j + 1))) {
    j += 2
  } else {
    while (isDigit(sql.charAt(j)) || sql.charAt(j) === '_') j++
    if (sql.charAt(j) === '.') {
      j++
      while (isDigit(sql.charAt(j)) || sql.charAt(j) === '_') j++
    }
    const sign = sql.charAt(j + 1)
    if (/[eE]/.test(sql.charAt(j)) && (isDigit(sign) || sign === '+' || sign === '-')) {
      j += 2
    }
  }
  while (j < sql.length && isIdentifierPart(sql.charAt(j))) j++
  return j
}

/** True when the token is the bare keyword `keyword` (case-insensitive). */
export function isKeyword(token: Token | undefined, keyword: string): boolean {
  return token?.kind === 'word' && token.text.toUpperCase() === keyword
}

export function isPunct(token: Token | undefined, punct: string): boolean {
  return token?.kind === 'punct' && token.text === punct
}

/**
 * The name a token stands for when used as an identifier, or null when it cannot be one.
 * SQLite also accepts a string literal as a name in CREATE statements, for compatibility.
 */
export function identifierName(token: Token | undefined): string | null {
  if (token === undefined) return null
  if (token.kind === 'word' || token.kind === 'quoted' || token.kind === 'string') {
    return token.value
  }
  return null
}

/**
 * Splits a script into statements at semicolons. A CREATE TRIGGER body holds semicolons between
 * BEGIN and END: they do not end the statement, so a trigger comes out whole (and can then be
 * refused as one statement). Statements with no token (stray semicolons, comments) are skipped.
 */
export function splitStatements(sql: string): Statement[] {
  const statements: Statement[] = []
  let current: Token[] = []
  let trigger = new TriggerBodyTracker()

  const flush = (): void => {
    const first = current[0]
    const last = current[current.length - 1]
    if (first !== undefined && last !== undefined) {
      statements.push({
        text: sql.slice(first.start, last.end),
        start: first.start,
        end: last.end,
        tokens: current,
      })
    }
    current = []
    trigger = new TriggerBodyTracker()
  }

  for (const token of tokenize(sql)) {
    if (isPunct(token, ';') && !trigger.insideBody(current)) {
      flush()
      continue
    }
    current.push(token)
    trigger.see(current, token)
  }
  flush()
  return statements
}

/**
 * Follows a statement token by token to tell whether a semicolon falls inside a trigger body.
 * The body runs from the first BEGIN to its END; CASE ... END pairs inside it are counted so
 * that their END does not close the body. A semicolon before BEGIN ends the statement: no valid
 * trigger header holds one, and a broken header should not swallow the rest of the file.
 */
class TriggerBodyTracker {
  private state: 'before' | 'body' | 'after' = 'before'
  private caseDepth = 0

  see(tokens: readonly Token[], token: Token): void {
    if (!isTrigger(tokens)) return
    if (this.state === 'before') {
      if (isKeyword(token, 'BEGIN')) this.state = 'body'
    } else if (this.state === 'body') {
      if (isKeyword(token, 'CASE')) {
        this.caseDepth++
      } else if (isKeyword(token, 'END')) {
        if (this.caseDepth > 0) this.caseDepth--
        else this.state = 'after'
      }
    }
  }

  insideBody(tokens: readonly Token[]): boolean {
    return isTrigger(tokens) && this.state === 'body'
  }
}

/** CREATE [TEMP|TEMPORARY] TRIGGER ... */
function isTrigger(tokens: readonly Token[]): boolean {
  if (!isKeyword(tokens[0], 'CREATE')) return false
  const second = tokens[1]
  if (isKeyword(second, 'TEMP') || isKeyword(second, 'TEMPORARY')) {
    return isKeyword(tokens[2], 'TRIGGER')
  }
  return isKeyword(second, 'TRIGGER')
}

/** 1-based line number of `offset` in `text`. */
export function lineAt(text: string, offset: number): number {
  let line = 1
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) line++
  }
  return line
}
