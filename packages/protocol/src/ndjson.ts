/**
 * Splits an NDJSON byte stream into lines, whatever the chunks' boundaries (a chunk may end in
 * the middle of a line or of a UTF-8 character). No I/O: feed it the chunks as they come.
 */
import { WireFormatError } from './wire-format-error.ts'

export class LineSplitter {
  readonly #decoder = new TextDecoder()
  readonly #maxLineChars: number
  #buffer = ''

  /** `maxLineChars`: a line longer than this throws WireFormatError (a runaway answer). */
  constructor(maxLineChars = Number.POSITIVE_INFINITY) {
    this.#maxLineChars = maxLineChars
  }

  /** The complete lines `chunk` ends, without their newline; blank lines are left out. */
  push(chunk: Uint8Array): string[] {
    this.#buffer += this.#decoder.decode(chunk, { stream: true })
    const lines: string[] = []
    let start = 0
    for (;;) {
      const end = this.#buffer.indexOf('\n', start)
      if (end === -1) break
      const line = this.#buffer.slice(start, end).trim()
      start = end + 1
      if (line !== '') lines.push(line)
    }
    if (start > 0) this.#buffer = this.#buffer.slice(start)
    if (this.#buffer.length > this.#maxLineChars) {
      throw new WireFormatError(`an NDJSON line is longer than ${this.#maxLineChars} characters`)
    }
    return lines
  }

  /**
   * At the end of the stream: what follows the last newline, trimmed. Not empty means the
   * stream was cut in the middle of a line.
   */
  end(): string {
    this.#buffer += this.#decoder.decode()
    const rest = this.#buffer.trim()
    this.#buffer = ''
    return rest
  }
}
