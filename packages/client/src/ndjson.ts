/** Lines of an NDJSON response body (a web ReadableStream), split by @patina/protocol. */
import { LineSplitter, WireFormatError } from '@patina/protocol'
import { ProtocolError } from './errors.ts'

/** The body ended in the middle of a line: the connection was cut. */
export class TruncatedStreamError extends Error {
  static {
    this.prototype.name = 'TruncatedStreamError'
  }
}

/**
 * Yields each non-empty line of `body`. A body that ends without a final newline was cut off:
 * TruncatedStreamError. A line over `maxLineChars`: ProtocolError.
 * Returning early (break) cancels the body, which releases the connection.
 */
export async function* readLines(
  body: ReadableStream<Uint8Array>,
  maxLineChars: number,
  signal?: AbortSignal,
): AsyncGenerator<string, void, undefined> {
  const reader = body.getReader()
  const splitter = new LineSplitter(maxLineChars)
  let finished = false
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      let lines: string[]
      try {
        lines = splitter.push(value)
      } catch (err) {
        if (err instanceof WireFormatError) throw new ProtocolError(err.message, { cause: err })
        throw err
      }
      for (const line of lines) {
        // Lines already read must not outlive an abort.
        signal?.throwIfAborted()
        yield line
      }
    }
    finished = true
    const rest = splitter.end()
    if (rest !== '') {
      throw new TruncatedStreamError(
        `the stream ended in the middle of a line: ${rest.slice(0, 200)}`,
      )
    }
  } finally {
    if (!finished) {
      // The caller stopped early or reading failed: drop the rest of the body. cancel() rejects
      // only when the stream already errored, and that error is what the caller sees.
      await reader.cancel().catch(() => undefined)
    }
    reader.releaseLock()
  }
}
