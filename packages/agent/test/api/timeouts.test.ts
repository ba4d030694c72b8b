/**
 * Goal: the API closes connections that hold a slot without making a request (one that sends
 * nothing, one that sends half a request line, a kept-alive one left idle), within its timeouts
 * plus a margin, and does not close a subscription stream that is quiet for longer than all of
 * them.
 *
 * Method: an agent on loopback with short `[api]` timeouts, raw `node:net` sockets, and the time
 * from connect to the agent's close of each.
 */
import assert from 'node:assert/strict'
import { connect, type AddressInfo, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { openApi, tx, type ApiHarness } from './harness.ts'

const HEADERS_TIMEOUT_MS = 300
const REQUEST_TIMEOUT_MS = 600
const KEEP_ALIVE_TIMEOUT_MS = 300
/**
 * Slack on each bound: Node checks the head and request timeouts on a timer (here every
 * headers_timeout_ms / 4), and Node 20 closes an idle kept-alive connection about a second after
 * keepAliveTimeout; plus a loaded test machine.
 */
const MARGIN_MS = 1500
/** Longer than any of the timeouts above, with Node's keep-alive second. */
const QUIET_MS = REQUEST_TIMEOUT_MS + KEEP_ALIVE_TIMEOUT_MS + 1500

interface Probe {
  readonly socket: Socket
  /** Everything the agent sent so far. */
  received(): string
  /** Resolves with the ms from connect to the close, or rejects after `limitMs`. */
  closed(limitMs: number): Promise<number>
  /** Resolves once the agent has sent `text`. */
  waitFor(text: string): Promise<void>
}

function open(port: number): Promise<Probe> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let data = ''
    let closedAt: number | null = null
    let onData = (): void => undefined
    let onClose = (): void => undefined
    const started = performance.now()
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      data += chunk
      onData()
    })
    socket.on('close', () => {
      closedAt = performance.now()
      onClose()
    })
    // A reset by the agent is a close too; it shows as 'close' just after.
    socket.on('error', () => undefined)
    socket.once('connect', () => {
      resolve({
        socket,
        received: () => data,
        closed: (limitMs) =>
          new Promise<number>((done, fail) => {
            const timer = setTimeout(() => {
              fail(new Error(`still open after ${limitMs} ms; received ${JSON.stringify(data)}`))
            }, limitMs)
            onClose = () => {
              clearTimeout(timer)
              done((closedAt ?? performance.now()) - started)
            }
            if (closedAt !== null) onClose()
          }),
        waitFor: (text) =>
          new Promise<void>((done, fail) => {
            const timer = setTimeout(() => {
              fail(new Error(`no ${JSON.stringify(text)} in ${JSON.stringify(data)}`))
            }, 5000)
            onData = () => {
              if (!data.includes(text)) return
              clearTimeout(timer)
              done()
            }
            onData()
          }),
      })
    })
    socket.once('error', reject)
  })
}

describe('api - connection timeouts', () => {
  let h: ApiHarness
  let port: number
  const sockets: Socket[] = []
  const probe = async (): Promise<Probe> => {
    const p = await open(port)
    sockets.push(p.socket)
    return p
  }

  before(async () => {
    h = await openApi(
      [
        '[api]',
        `headers_timeout_ms = ${HEADERS_TIMEOUT_MS}`,
        `request_timeout_ms = ${REQUEST_TIMEOUT_MS}`,
        `keep_alive_timeout_ms = ${KEEP_ALIVE_TIMEOUT_MS}`,
      ].join('\n'),
    )
    port = (h.app.server.address() as AddressInfo).port
  })

  after(async () => {
    for (const s of sockets) s.destroy()
    await h.close()
  })

  it('api - a connection that sends nothing is closed after headers_timeout_ms', async () => {
    const p = await probe()
    const ms = await p.closed(HEADERS_TIMEOUT_MS + MARGIN_MS)
    assert.ok(ms >= HEADERS_TIMEOUT_MS - 50, `closed after ${ms} ms, before the timeout`)
  })

  it('api - a connection that sends half a request line is closed', async () => {
    const p = await probe()
    p.socket.write('GET /v1/hea')
    const ms = await p.closed(HEADERS_TIMEOUT_MS + MARGIN_MS)
    assert.ok(ms >= HEADERS_TIMEOUT_MS - 50, `closed after ${ms} ms, before the timeout`)
    assert.match(p.received(), /^(HTTP\/1\.1 408 |$)/)
    if (p.received() !== '')
      assert.match(p.received(), /\{"error":"[^"]+","code":"REQUEST_TIMEOUT"\}$/)
  })

  it('api - bytes that are not HTTP get 400 BAD_REQUEST with its code, and the connection closes', async () => {
    const p = await probe()
    p.socket.write('NOT HTTP AT ALL\r\n\r\n')
    await p.closed(HEADERS_TIMEOUT_MS + MARGIN_MS)
    assert.match(p.received(), /^HTTP\/1\.1 400 /)
    assert.match(p.received(), /\{"error":"malformed HTTP request: [^"]+","code":"BAD_REQUEST"\}$/)
  })

  it('api - a request whose body stops halfway is closed after request_timeout_ms', async () => {
    const p = await probe()
    p.socket.write(
      'POST /v1/queries HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n' +
        'content-length: 100\r\n\r\n"SELECT',
    )
    await p.closed(REQUEST_TIMEOUT_MS + MARGIN_MS)
  })

  it('api - a kept-alive connection left idle after a request is closed', async () => {
    const p = await probe()
    p.socket.write('GET /v1/health HTTP/1.1\r\nhost: t\r\n\r\n')
    await p.waitFor('"response"')
    assert.match(p.received(), /^HTTP\/1\.1 200 /)
    assert.doesNotMatch(p.received(), /connection: close/i)
    await p.closed(HEADERS_TIMEOUT_MS + KEEP_ALIVE_TIMEOUT_MS + MARGIN_MS)
  })

  it('api - a subscription quiet for longer than every timeout stays open', async () => {
    const p = await probe()
    const body = '"SELECT * FROM t"'
    p.socket.write(
      'POST /v1/subscriptions HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n' +
        `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    )
    await p.waitFor('"eoq"')
    assert.match(p.received(), /^HTTP\/1\.1 200 /)
    await sleep(QUIET_MS)
    assert.ok(!p.socket.destroyed && p.socket.readyState === 'open', 'the stream was closed')
    // Still live: a change arrives on it.
    await tx(h, [['INSERT INTO t (id, v) VALUES (?, ?)', [1, 'after the quiet']]])
    await p.waitFor('"after the quiet"')
    assert.match(p.received(), /\{"change":\["insert",/)
  })
})
