/**
 * The client's requests in Node: undici's request() over a keep-alive connection pool of the
 * client's own (an undici Agent: one pool per agent URL), instead of fetch. Node's fetch runs
 * the whole Fetch standard per request (Request, Headers, web streams) and tops out far below
 * what the same connections carry (docs/client.md, "Transport").
 *
 * Only the package's Node entry (index.ts) imports this file: the browser entry never reaches
 * a `node:` module or undici (test/browser-entry.test.ts checks the built import graph).
 */
import { setMaxListeners } from 'node:events'
import type { Readable } from 'node:stream'
import { Agent, request } from 'undici'
import { certainlyNotSent, fetchHttp, type Http, type HttpAnswer } from '../transport.ts'

/**
 * A web stream of `body`'s chunks, read as the consumer asks (backpressure: nothing is read
 * from the socket beyond one chunk ahead). Cancelling it destroys `body`, which closes its
 * connection. Not a byte stream: those detach every chunk, so undici's own copies each one.
 */
function webStream(body: Readable): ReadableStream<Uint8Array> {
  const chunks = body[Symbol.asyncIterator]() as AsyncIterator<Uint8Array>
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const next = await chunks.next()
        if (next.done === true) controller.close()
        else controller.enqueue(next.value)
      },
      async cancel() {
        await chunks.return?.()
      },
    },
    { highWaterMark: 0 },
  )
}

/**
 * A keep-alive pool per agent, made on the first request and destroyed by `close()`; or, when
 * the caller gave one, `f` (the `fetch` option). `closed`: the client's close signal. Every call
 * in flight and every open stream listens to it, so past 10 of them Node would warn of a
 * listener leak that is none.
 */
export function nodeHttp(closed: AbortSignal, f: typeof fetch | undefined): Http {
  setMaxListeners(0, closed)
  if (f !== undefined) return fetchHttp(f)
  let dispatcher: Agent | null = null
  let done = false
  return {
    async request(url, init) {
      if (done) throw new Error('the client closed its connections')
      // The client's own timeout covers the wait for the headers (per attempt, `timeoutMs`);
      // undici's defaults stay as under fetch (300 s for the headers and between body chunks).
      dispatcher ??= new Agent()
      const res = await request(url, {
        method: init.method,
        headers: init.headers,
        ...(init.body === undefined ? {} : { body: init.body }),
        signal: init.signal,
        dispatcher,
      })
      const { statusCode, statusText, headers, body } = res
      let stream: ReadableStream<Uint8Array> | null = null
      const answer: HttpAnswer = {
        ok: statusCode >= 200 && statusCode < 300,
        status: statusCode,
        statusText,
        headers: {
          get(name) {
            const v = headers[name.toLowerCase()]
            if (v === undefined) return null
            return Array.isArray(v) ? v.join(', ') : v
          },
        },
        get body() {
          return (stream ??= webStream(body))
        },
        text: () => body.text(),
      }
      return answer
    },
    notSent: (err) => certainlyNotSent(err),
    async close() {
      done = true
      const d = dispatcher
      dispatcher = null
      // Every call was aborted before (client.close()); nothing is left to wait for.
      await d?.destroy()
    },
  }
}
