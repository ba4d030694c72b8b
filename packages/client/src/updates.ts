/**
 * A table's update stream (`POST /v1/updates/:table`): the primary key of every row that
 * changes, as an async iterable. It has no change ids, so it cannot resume without a gap: when
 * the connection drops the iteration throws ConnectionError (re-read the table, then call
 * `updates()` again).
 */
import { ClientClosedError, ConnectionError, ProtocolError, QueryError } from './errors.ts'
import { readLines } from './ndjson.ts'
import { decodeLine, streamError } from './rows.ts'
import type { Linked } from './signals.ts'
import { abortError, type Sent } from './transport.ts'
import type { IntegerMode, SqlValue } from './values.ts'

/** A row of the table was inserted or updated (`update`), or deleted (`delete`). */
export interface UpdateEvent<K extends readonly SqlValue[] = SqlValue[]> {
  readonly type: 'update' | 'delete'
  /** The row's primary key values, in key order. */
  readonly pk: K
}

class UpdatesClosed extends Error {}

/** A live update stream. Iterate it once; `close()` or `await using` releases it. */
export class UpdateStream<K extends readonly SqlValue[] = SqlValue[]>
  implements AsyncIterable<UpdateEvent<K>>, AsyncDisposable
{
  readonly table: string
  /** The agent the stream comes from. */
  readonly agent: string
  readonly #first: Sent
  readonly #life: Linked
  readonly #integers: IntegerMode
  readonly #maxLineChars: number
  readonly #onClose: () => void
  #iterator: AsyncGenerator<UpdateEvent<K>, void, undefined> | null = null
  #closed = false

  /** @internal Made by `client.updates()`. */
  constructor(
    table: string,
    first: Sent,
    life: Linked,
    integers: IntegerMode,
    maxLineChars: number,
    onClose: () => void,
  ) {
    this.table = table
    this.agent = first.url
    this.#first = first
    this.#life = life
    this.#integers = integers
    this.#maxLineChars = maxLineChars
    this.#onClose = onClose
  }

  [Symbol.asyncIterator](): AsyncGenerator<UpdateEvent<K>, void, undefined> {
    if (this.#iterator !== null) {
      throw new TypeError('an update stream can be iterated only once; call updates() again')
    }
    this.#iterator = this.#events()
    return this.#iterator
  }

  /** Ends the stream: the iteration finishes quietly and the connection is released. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#life.abort(new UpdatesClosed('the update stream was closed'))
    await this.#iterator?.return(undefined)
    // Not iterated (or never started): cancel the body here. Rejects only if already errored.
    await this.#first.response.body?.cancel().catch(() => undefined)
    this.#finalize()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  #finalize(): void {
    this.#first.finish()
    this.#life.unlink()
    this.#onClose()
  }

  async *#events(): AsyncGenerator<UpdateEvent<K>, void, undefined> {
    const { url, response } = this.#first
    try {
      if (response.body === null) throw new ProtocolError(`${url} answered without a body`)
      for await (const line of readLines(response.body, this.#maxLineChars, this.#first.signal)) {
        const e = decodeLine(line, this.#integers, url)
        if (e.type === 'notify') {
          yield { type: e.notifyType, pk: e.pk as unknown as K }
        } else if (e.type === 'error') {
          throw streamError(e, url)
        } else {
          throw new ProtocolError(`${url} sent a "${e.type}" event in an update stream`)
        }
      }
      throw new Error(`${url} ended the stream`)
    } catch (err) {
      const reason: unknown = this.#life.signal.reason
      if (this.#life.signal.aborted) {
        if (reason instanceof UpdatesClosed || reason instanceof ClientClosedError) return
        throw abortError(reason)
      }
      if (err instanceof ProtocolError || err instanceof QueryError) throw err
      const error = err instanceof Error ? err : new Error(String(err))
      throw new ConnectionError(
        `the update stream of table "${this.table}" from ${url} broke (${error.message}); ` +
          'updates while disconnected are unknown: re-read the table, then call updates() again',
        [{ url, error }],
        { cause: error },
      )
    } finally {
      this.#finalize()
    }
  }
}
