/**
 * The body of a `/v1/queries` answer: the query's NDJSON lines as a byte stream whose buffer is
 * bounded in bytes (`[api] max_response_buffer_bytes`), not in batches.
 *
 * The body is piped into the HTTP response. When the client does not read, the response's
 * socket fills, the pipe stops taking chunks, and the body stops pulling lines (and so rows
 * from the reader, which then waits for credit) once it holds `highWaterMark` bytes. So one
 * response holds at most about max_response_buffer_bytes + one chunk in the body, plus the
 * socket's own buffer (16 KiB) + one chunk; a chunk is at most RESPONSE_CHUNK_BYTES + one row
 * (a row is at most `[api] max_row_bytes`).
 *
 * Metrics (one set per registry, summed over every open answer of every API on it):
 *   patina_api_response_buffered_bytes       bytes held for query answers not yet sent
 *   patina_api_response_buffer_bytes_max     the cap per answer (max_response_buffer_bytes)
 *   patina_api_response_pauses_total         times an answer stopped reading rows (client slow)
 *   patina_api_rows_too_large_total          rows refused for max_row_bytes (queries)
 */
import type { ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import { Counter, Gauge, type Registry } from 'prom-client'

/** Lines of a batch are written in chunks of about this many bytes. */
export const RESPONSE_CHUNK_BYTES = 64 * 1024

interface Open {
  readonly body: QueryBody
  readonly res: ServerResponse
}

/** The metrics of query answers on one registry. */
export interface ResponseMetrics {
  readonly pauses: Counter
  readonly rowsTooLarge: Counter
  /** Counts `body` (sent into `res`) in the buffered gauge until `res` closes. */
  track(body: QueryBody, res: ServerResponse): void
}

const byRegistry = new WeakMap<Registry, { metrics: ResponseMetrics; max: Gauge }>()

/** The registry's query-answer metrics (created once per registry; the cap gauge set). */
export function responseMetrics(registry: Registry, maxBufferBytes: number): ResponseMetrics {
  let entry = byRegistry.get(registry)
  if (entry === undefined) {
    const open = new Set<Open>()
    new Gauge({
      name: 'patina_api_response_buffered_bytes',
      help:
        'Bytes of /v1/queries answers held in the agent and not yet sent to their clients ' +
        '(stream and socket buffers), summed over open answers',
      registers: [registry],
      collect() {
        let n = 0
        for (const o of open) n += o.body.readableLength + o.res.writableLength
        this.set(n)
      },
    })
    const max = new Gauge({
      name: 'patina_api_response_buffer_bytes_max',
      help: 'Cap on the bytes one answer holds before it stops reading rows ([api] max_response_buffer_bytes)',
      registers: [registry],
    })
    const metrics: ResponseMetrics = {
      pauses: new Counter({
        name: 'patina_api_response_pauses_total',
        help: 'Times a /v1/queries answer stopped reading rows until its client took what it held',
        registers: [registry],
      }),
      rowsTooLarge: new Counter({
        name: 'patina_api_rows_too_large_total',
        help: 'Rows of /v1/queries results refused for [api] max_row_bytes (the answer ends with ROW_TOO_LARGE)',
        registers: [registry],
      }),
      track(body, res) {
        const o = { body, res }
        open.add(o)
        const forget = (): void => {
          open.delete(o)
        }
        // The body closes once it has been read to its end or destroyed; the response once
        // its client has it all or went away.
        body.once('close', () => {
          if (res.writableLength === 0) forget()
          else res.once('close', forget)
        })
        res.once('close', forget)
      },
    }
    entry = { metrics, max }
    byRegistry.set(registry, entry)
  }
  entry.max.set(maxBufferBytes)
  return entry.metrics
}

/**
 * A byte stream of `lines`, pulled while it holds less than `highWaterMark` bytes. Destroying it
 * (the client went away) returns the iterator, which cancels the query.
 */
export class QueryBody extends Readable {
  private readonly lines: AsyncIterator<string>
  private readonly onPause: () => void
  private pulling = false

  constructor(lines: AsyncIterator<string>, highWaterMark: number, onPause: () => void) {
    super({ highWaterMark })
    this.lines = lines
    this.onPause = onPause
  }

  override _read(): void {
    if (this.pulling) return
    this.pulling = true
    void this.pull()
  }

  private async pull(): Promise<void> {
    try {
      for (;;) {
        const next = await this.lines.next()
        if (this.destroyed) return
        if (next.done === true) {
          this.push(null)
          return
        }
        if (!this.push(next.value)) {
          this.onPause()
          return
        }
      }
    } catch (err) {
      this.destroy(err instanceof Error ? err : new Error(String(err)))
    } finally {
      this.pulling = false
    }
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    const lines = this.lines
    Promise.resolve(lines.return?.()).then(
      () => {
        callback(err)
      },
      () => {
        callback(err)
      },
    )
  }
}
