/** Lines of an NDJSON response body (a web ReadableStream), decoded as UTF-8. */
import { ProtocolError } from './errors.ts'

/** The body ended in the middle of a line: the connection was cut. */
export class TruncatedStreamError extends Error {
  static {
    this.prototype.name = 'TruncatedStreamError'
  }
}

/**
 * Yields each non-empty line of `body`. A body that ends without a final newline was cut off:
 * TruncatedStreamError.
 * Returning early (break) cancels the body, which releases the connection.
 */
export async function* readLines(
  body: ReadableStream<Uint8Array>,
  maxLineChars: number,
  signal?: AbortSignal,
): AsyncGenerator<string, void, undefined> {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  let buffer = ''
  let finished = false
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      buffer += decoder.decode(value, { stream: true })
      let start = 0
      for (;;) {
        const end = buffer.indexOf('\n', start)
        if (end === -1) break
        const line = buffer.slice(start, end).trim()
        start = end + 1
        // Lines already read must not outlive an abort.
        signal?.throwIfAborted()
        if (line !== '') yield line
      }
      buffer = start === 0 ? buffer : buffer.slice(start)
      if (buffer.length > maxLineChars) {
        throw new ProtocolError(`an NDJSON line is longer than ${maxLineChars} characters`)
      }
    }
    buffer += decoder.decode()
    finished = true
    if (buffer.trim() !== '') {
      throw new TruncatedStreamError(
        `the stream ended in the middle of a line: ${buffer.slice(0, 200)}`,
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
