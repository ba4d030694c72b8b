/**
 * A subscription: the rows of a query, then every change to them, as an async iterable that
 * resumes by itself after a disconnect.
 *
 * Resume rules (docs/client.md, "Subscriptions"):
 *   1. The subscription lives on one agent (its id and change ids mean nothing elsewhere), so
 *      it always resumes there: `GET /v1/subscriptions/:id?from=<last change id seen>`.
 *   2. The last change id seen is the `eoq` event's, then each `change` event's. A change with
 *      an id already seen is dropped (never repeated); a jump in change ids throws
 *      SubscriptionGoneError (never skipped).
 *   3. A disconnect before any change id is known resumes only if no row was delivered yet
 *      (the initial rows start over); after some rows it throws ResumeError, as there is no
 *      position to resume from without repeating or losing rows.
 *   4. Resume attempts wait a backoff with full jitter (resume.baseDelayMs doubling up to
 *      resume.maxDelayMs); after resume.attempts failures in a row it throws ResumeError. The
 *      count starts over once a resumed stream delivers an event.
 *   5. 404 or 410 on resume, or an error whose code says the subscription or its history is
 *      gone (`RESUME_GONE`, `SUBSCRIPTION_NOT_FOUND`: the agent keeps a bounded history),
 *      throws SubscriptionGoneError: subscribe again without `from`.
 *   5a. An error event whose code is resumable (`LISTENER_TOO_SLOW`: the agent cut this
 *      listener for falling behind; `AGENT_CLOSING`: it is shutting down) ends the stream like
 *      a disconnect: resumed per 1-4. Any other error event (the subscription failed on the
 *      agent, or an agent that sends no code) throws QueryError. An error event is not
 *      progress: it does not start the attempt count over. Only codes decide: never the
 *      message.
 *   6. `close()`, `client.close()` or leaving the loop ends the iteration quietly; the call's
 *      `signal` makes it throw AbortError.
 *   7. A stream resumed with `from` has no `columns` event (as in Corrosion); the columns come
 *      from before the disconnect, or, for `subscribe(sql, { from })`, from the `columns`
 *      option or a `skip_rows=true` request that reads just the columns.
 */
import { isGone, isResumable, type ChangeType, type WireEvent } from '@patina/protocol'
import {
  InvalidStatementError,
  PatinaHttpError,
  ProtocolError,
  QueryError,
  ResumeError,
  SubscriptionGoneError,
  ClientClosedError,
} from './errors.ts'
import { readLines } from './ndjson.ts'
import { decodeLine, makeRow, readColumns, streamError } from './rows.ts'
import { backoffMs, sleep, type Linked } from './signals.ts'
import { abortError, type ClientEvent, type Sent, type Transport } from './transport.ts'
import type { IntegerMode, Row } from './values.ts'

export type { ChangeType }

/** What a subscription yields; a union on `type`. */
export type SubscriptionEvent<R = Row> =
  | { readonly type: 'columns'; readonly columns: readonly string[] }
  /** One row of the initial result. `rowId` is the subscription's stable id for the row. */
  | { readonly type: 'row'; readonly rowId: number; readonly row: R }
  /** End of the initial rows; `changeId` is the change id they stand at. */
  | { readonly type: 'eoq'; readonly time: number; readonly changeId: number | null }
  /** A row entered (`insert`), changed (`update`) or left (`delete`) the result. */
  | {
      readonly type: 'change'
      readonly changeType: ChangeType
      readonly rowId: number
      readonly row: R
      readonly changeId: number
    }

export interface ResumePolicy {
  readonly attempts: number
  readonly baseDelayMs: number
  readonly maxDelayMs: number
}

export interface SubscriptionContext {
  readonly transport: Transport
  readonly integers: IntegerMode
  readonly maxLineChars: number
  readonly resume: ResumePolicy
  readonly onEvent: ((event: ClientEvent) => void) | undefined
}

/** The reason a subscription's own close() aborts with: ends the iteration quietly. */
class SubscriptionClosed extends Error {}

/** Whether an answer to (re)subscribing says the subscription or its history is gone. */
export function isGoneAnswer(err: PatinaHttpError): boolean {
  return err.status === 404 || err.status === 410 || isGone(err.agentCode)
}

/**
 * A live subscription. Iterate it once (`for await`); `close()` or `await using` releases it.
 * `id`, `agent` and `lastChangeId` say where it stands, to resume it later with
 * `client.subscribe(sql, { from: sub.lastChangeId, agent: sub.agent })`.
 */
export class Subscription<R = Row> implements AsyncIterable<SubscriptionEvent<R>>, AsyncDisposable {
  /** The subscription's id on its agent (the `corro-query-id` header). */
  readonly id: string
  /** The agent the subscription lives on. */
  readonly agent: string
  readonly #ctx: SubscriptionContext
  readonly #life: Linked
  readonly #onClose: () => void
  #first: Sent | null
  #iterator: AsyncGenerator<SubscriptionEvent<R>, void, undefined> | null = null
  #columns: readonly string[] | null = null
  #lastChangeId: number | null
  #rowsDelivered = 0
  #attempts = 0
  #closed = false

  /** @internal Made by `client.subscribe()`. */
  constructor(
    ctx: SubscriptionContext,
    first: Sent,
    id: string,
    from: number | null,
    columns: readonly string[] | null,
    life: Linked,
    onClose: () => void,
  ) {
    this.#ctx = ctx
    this.#first = first
    this.id = id
    this.agent = first.url
    this.#lastChangeId = from
    this.#columns = columns
    this.#life = life
    this.#onClose = onClose
  }

  /** The last change id delivered (or the `eoq`'s, or `from`); null before any. */
  get lastChangeId(): number | null {
    return this.#lastChangeId
  }

  /** The result's column names, once the `columns` event arrived. */
  get columns(): readonly string[] | null {
    return this.#columns
  }

  [Symbol.asyncIterator](): AsyncGenerator<SubscriptionEvent<R>, void, undefined> {
    if (this.#iterator !== null) {
      throw new TypeError('a subscription can be iterated only once; subscribe again for another')
    }
    this.#iterator = this.#events()
    return this.#iterator
  }

  /** Ends the subscription: the iteration finishes quietly and the connection is released. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#life.abort(new SubscriptionClosed('the subscription was closed'))
    // A generator that never started ignores return(); #release() frees its first answer then.
    await this.#iterator?.return(undefined)
    await this.#release()
    this.#finalize()
  }

  /** Drops the listeners and tells the client this subscription is over (idempotent). */
  #finalize(): void {
    this.#life.unlink()
    this.#onClose()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  async #release(): Promise<void> {
    const first = this.#first
    this.#first = null
    if (first === null) return
    // The fetch is aborted already (it shares the subscription's signal); cancel() rejects then.
    await first.response.body?.cancel().catch(() => undefined)
    first.finish()
  }

  /** Whether the iteration should end quietly (closed) rather than throw. */
  #endedQuietly(): boolean {
    const reason: unknown = this.#life.signal.reason
    return (
      this.#life.signal.aborted &&
      (reason instanceof SubscriptionClosed || reason instanceof ClientClosedError)
    )
  }

  async *#events(): AsyncGenerator<SubscriptionEvent<R>, void, undefined> {
    let sent: Sent | null = this.#first
    this.#first = null
    let lastError: Error = new Error('not connected')
    try {
      for (;;) {
        sent ??= await this.#reconnect(lastError)
        const body = sent.response.body
        try {
          if (body === null) throw new ProtocolError(`${sent.url} answered without a body`)
          for await (const line of readLines(body, this.#ctx.maxLineChars, sent.signal)) {
            const parsed = decodeLine(line, this.#ctx.integers, sent.url)
            // An error event is not progress: an agent that answers every resume with one must
            // not keep the attempt count at zero (the resume would never give up).
            if (parsed.type !== 'error') this.#attempts = 0
            const event = this.#handle(parsed, sent.url)
            if (event !== null) yield event
          }
          lastError = new Error(`${sent.url} ended the stream`)
        } catch (err) {
          if (this.#life.signal.aborted) throw err
          if (!this.#resumable(err)) throw err
          lastError = err instanceof Error ? err : new Error(String(err))
        } finally {
          sent.finish()
        }
        sent = null
      }
    } catch (err) {
      if (this.#endedQuietly()) return
      if (this.#life.signal.aborted) throw abortError(this.#life.signal.reason)
      throw err
    } finally {
      if (sent !== null) sent.finish()
      this.#finalize()
    }
  }

  /** Whether a failure of the stream is a disconnect to resume from (or an answer to throw). */
  #resumable(err: unknown): boolean {
    // The agent ended the stream: only its resumable reasons are resumed (#reconnect then
    // decides whether there is a position to resume from); a failed subscription is thrown.
    if (err instanceof QueryError) return isResumable(err.agentCode)
    if (
      err instanceof SubscriptionGoneError ||
      err instanceof ProtocolError ||
      err instanceof InvalidStatementError ||
      err instanceof ResumeError
    ) {
      return false
    }
    return true
  }

  /** One event from the wire: the event to yield, null to skip it, or a thrown error. */
  #handle(e: WireEvent, url: string): SubscriptionEvent<R> | null {
    switch (e.type) {
      case 'change': {
        const { changeId } = e
        const last = this.#lastChangeId
        if (last !== null) {
          if (changeId <= last) return null
          if (changeId !== last + 1) {
            throw new SubscriptionGoneError(
              `subscription ${this.id} on ${this.agent} skipped from change ${last} to ${changeId}: ` +
                'changes are missing, so its state cannot be kept exact; subscribe again without ' +
                '`from` and rebuild from the fresh rows',
              this.id,
              last,
            )
          }
        }
        const row = makeRow(this.#columns, e.cells, url) as R
        this.#lastChangeId = changeId
        return { type: 'change', changeType: e.changeType, rowId: e.rowid, row, changeId }
      }
      case 'row': {
        const row = makeRow(this.#columns, e.cells, url) as R
        this.#rowsDelivered++
        return { type: 'row', rowId: e.rowid, row }
      }
      case 'columns': {
        const columns = readColumns(e.columns)
        if (this.#columns !== null) {
          if (columns.join('\u0000') === this.#columns.join('\u0000')) return null
          throw new ProtocolError(
            `subscription ${this.id}: the columns changed on resume (${this.#columns.join(', ')} -> ` +
              `${columns.join(', ')})`,
          )
        }
        this.#columns = columns
        return { type: 'columns', columns }
      }
      case 'eoq':
        if (e.changeId !== null) this.#lastChangeId = e.changeId
        return { type: 'eoq', time: e.time, changeId: e.changeId }
      case 'error':
        if (isGone(e.code)) {
          throw new SubscriptionGoneError(
            `subscription ${this.id} on ${this.agent} cannot resume from change ` +
              `${String(this.#lastChangeId)} (${e.error}); subscribe again without \`from\` and ` +
              'rebuild from the fresh rows',
            this.id,
            this.#lastChangeId,
            { agentCode: e.code },
          )
        }
        throw streamError(e, url)
      case 'notify':
        throw new ProtocolError(`${url} sent a "notify" event in a subscription`)
    }
  }

  /** Opens the subscription again on its agent, per the resume rules; throws when it cannot. */
  async #reconnect(cause: Error): Promise<Sent> {
    const { resume, transport } = this.#ctx
    let lastError = cause
    for (;;) {
      const from = this.#lastChangeId
      if (from === null && this.#rowsDelivered > 0) {
        throw new ResumeError(
          `subscription ${this.id} on ${this.agent} lost its connection during the initial rows ` +
            `(after ${this.#rowsDelivered}, before the change id that ends them), so it cannot ` +
            `resume without repeating or losing rows (${lastError.message}); subscribe again`,
          this.#details(),
          { cause: lastError },
        )
      }
      if (this.#attempts >= resume.attempts) {
        throw new ResumeError(
          `gave up resuming subscription ${this.id} on ${this.agent} after ${this.#attempts} ` +
            `attempts (last: ${lastError.message}). Check that the agent is running; to continue ` +
            `without a gap once it is back, subscribe again with { from: ${String(from)}, ` +
            `agent: '${this.agent}' }, or without from to start over`,
          this.#details(),
          { cause: lastError },
        )
      }
      this.#attempts++
      const delayMs = backoffMs(this.#attempts, resume.baseDelayMs, resume.maxDelayMs)
      this.#ctx.onEvent?.({
        type: 'subscription-retry',
        id: this.id,
        agent: this.agent,
        attempt: this.#attempts,
        delayMs,
        error: lastError,
      })
      await sleep(delayMs, this.#life.signal)
      const path =
        `/v1/subscriptions/${encodeURIComponent(this.id)}` + (from === null ? '' : `?from=${from}`)
      try {
        const sent = await transport.send(
          { method: 'GET', path, kind: 'read', agent: this.agent, attempts: 1 },
          { signal: this.#life.signal },
        )
        this.#ctx.onEvent?.({ type: 'subscription-resumed', id: this.id, agent: this.agent, from })
        return sent
      } catch (err) {
        if (this.#life.signal.aborted) throw err
        if (err instanceof PatinaHttpError) {
          if (isGoneAnswer(err)) {
            throw new SubscriptionGoneError(
              `subscription ${this.id} is gone from ${this.agent} (${err.message}); subscribe ` +
                'again without `from` and rebuild from the fresh rows',
              this.id,
              from,
              { cause: err, agentCode: err.agentCode },
            )
          }
          if (err.status < 500 && err.status !== 408 && err.status !== 429) {
            throw new ResumeError(
              `${this.agent} refused to resume subscription ${this.id}: ${err.message}`,
              this.#details(),
              { cause: err },
            )
          }
        }
        lastError = err instanceof Error ? err : new Error(String(err))
      }
    }
  }

  #details() {
    return {
      id: this.id,
      agent: this.agent,
      lastChangeId: this.#lastChangeId,
      attempts: this.#attempts,
    }
  }
}
