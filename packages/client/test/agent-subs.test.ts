/**
 * Goal: subscribe() and updates() against a real agent: the initial rows, then a change event
 * for each insert, update and delete made through the client; after the connection is cut the
 * subscription resumes by itself (GET /v1/subscriptions/:id?from=N) with nothing repeated or
 * lost; `from` + `agent` pick up after a change id; updates() reports primary keys.
 *
 * Method: one `patina agent` from the built bin, reached through a TCP proxy on 127.0.0.1
 * (helpers/proxy.ts) whose connections the test cuts to cause a real disconnect. Each route is
 * probed first: while the agent answers 404 "no such route" for it, its tests are skipped
 * with that reason (the agent's subscription routes are being built; these run once they land).
 * Waits are bounded by an AbortSignal.timeout on the subscription.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import {
  createClient,
  type ClientEvent,
  type PatinaClient,
  type SubscriptionEvent,
} from '../src/index.ts'
import { startAgent, type Agent } from './helpers/agent.ts'
import { proxy, type Proxy } from './helpers/proxy.ts'

const WAIT_MS = 10_000

let agent: Agent | undefined
let via: Proxy | undefined
let subsRoute: string | Error | null = null
let updatesRoute: string | Error | null = null
const clients: PatinaClient[] = []

/** How long the route probe waits for response headers. */
const PROBE_MS = 3000

/**
 * null when the route answers 200; a skip reason when the agent has no such route; throws
 * (the tests then fail with it) when the route exists but does not answer.
 */
async function probe(url: string, path: string, body: string | undefined): Promise<string | null> {
  const init: RequestInit = { method: 'POST', signal: AbortSignal.timeout(PROBE_MS) }
  if (body !== undefined) {
    init.body = body
    init.headers = { 'content-type': 'application/json' }
  }
  let res: Response
  try {
    res = await fetch(`${url}${path}`, init)
  } catch (err) {
    throw new Error(`POST ${path} did not answer within ${PROBE_MS} ms`, { cause: err })
  }
  if (res.status === 200) {
    await res.body?.cancel()
    return null
  }
  const text = await res.text()
  if (res.status === 404 && /no such route/.test(text)) {
    return `the agent has no ${path} route yet (404 "no such route"); skipped until it lands`
  }
  throw new Error(`POST ${path} answered ${res.status}: ${text}`)
}

/** Skips the test when its route is missing; fails it when the probe failed. */
function needs(t: { skip(message: string): void }, route: string | Error | null): boolean {
  if (route instanceof Error) throw route
  if (route === null) return true
  t.skip(route)
  return false
}

before(async () => {
  agent = await startAgent('subs')
  via = await proxy(agent.url)
  const url = agent.url
  const settle = (p: Promise<string | null>) =>
    p.catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))))
  ;[subsRoute, updatesRoute] = await Promise.all([
    settle(probe(url, '/v1/subscriptions', '"SELECT id, v FROM t"')),
    settle(probe(url, '/v1/updates/t', undefined)),
  ])
})

function proxied(): Proxy {
  assert.ok(via !== undefined, 'the agent and its proxy started')
  return via
}

after(async () => {
  await Promise.all(clients.map((c) => c.close()))
  await via?.close()
  await agent?.stop()
})

/** A client of the agent itself, not through the proxy. */
function direct(): PatinaClient {
  assert.ok(agent !== undefined, 'the agent started')
  const c = createClient({ url: agent.url })
  clients.push(c)
  return c
}

function client(events?: ClientEvent[]): PatinaClient {
  const c = createClient({
    url: proxied().url,
    resume: { attempts: 10, baseDelayMs: 20, maxDelayMs: 200 },
    ...(events === undefined ? {} : { onEvent: (e: ClientEvent) => events.push(e) }),
  })
  clients.push(c)
  return c
}

type T = { id: number; v: string | null }

/** Reads events from `it` until `done(events)` holds. */
async function readUntil(
  it: AsyncIterator<SubscriptionEvent<T>>,
  events: SubscriptionEvent<T>[],
  done: (events: SubscriptionEvent<T>[]) => boolean,
): Promise<void> {
  while (!done(events)) {
    const next = await it.next()
    if (next.done === true) assert.fail(`the subscription ended; got ${JSON.stringify(events)}`)
    events.push(next.value)
  }
}

function changes(events: SubscriptionEvent<T>[]) {
  return events.flatMap((e) =>
    e.type === 'change' ? [[e.changeType, e.row.id, e.row.v, e.changeId] as const] : [],
  )
}

describe('client - subscriptions and updates on a real agent', () => {
  it('client - subscribe: rows, then insert/update/delete changes; resumes after a cut', async (t) => {
    if (!needs(t, subsRoute)) return
    const events: ClientEvent[] = []
    const c = client(events)
    // Writes come from another program, straight to the agent (not through the proxy, whose
    // cut would also catch a write in flight: that one would rightly be OutcomeUnknownError).
    const writer = direct()
    await writer.transaction([
      "INSERT INTO t (id, v) VALUES (1, 'one')",
      "INSERT INTO t (id, v) VALUES (2, 'two')",
    ])
    await using sub = await c.subscribe<T>('SELECT id, v FROM t WHERE id < 100', {
      signal: AbortSignal.timeout(WAIT_MS),
    })
    const it = sub[Symbol.asyncIterator]()
    const got: SubscriptionEvent<T>[] = []
    await readUntil(it, got, (es) => es.some((e) => e.type === 'eoq'))
    assert.deepEqual(got[0], { type: 'columns', columns: ['id', 'v'] })
    assert.deepEqual(
      got.flatMap((e) => (e.type === 'row' ? [e.row] : [])).sort((x, y) => x.id - y.id),
      [
        { id: 1, v: 'one' },
        { id: 2, v: 'two' },
      ],
    )
    const eoq = got.find((e) => e.type === 'eoq')
    assert.ok(eoq?.type === 'eoq' && typeof eoq.changeId === 'number', JSON.stringify(eoq))
    const start = eoq.changeId

    await writer.transaction(["INSERT INTO t (id, v) VALUES (3, 'three')"])
    await writer.transaction(["UPDATE t SET v = 'TWO' WHERE id = 2"])
    await writer.transaction(['DELETE FROM t WHERE id = 1'])
    await readUntil(it, got, (es) => changes(es).length === 3)
    // Change ids follow each other; changes to different rows committed close together may
    // come in any order (the agent evaluates them in batches), so those are compared as a set.
    assert.deepEqual(
      changes(got).map((c) => c[3]),
      [start + 1, start + 2, start + 3],
    )
    assert.deepEqual(
      changes(got)
        .map((c) => c.slice(0, 3))
        .sort((x, y) => Number(x[1]) - Number(y[1])),
      [
        ['delete', 1, 'one'],
        ['update', 2, 'TWO'],
        ['insert', 3, 'three'],
      ],
    )

    // Cut the connection; write while it is down; the subscription resumes from start + 3.
    proxied().cut()
    await writer.transaction(["INSERT INTO t (id, v) VALUES (4, 'four')"])
    await readUntil(it, got, (es) => changes(es).length === 4)
    assert.deepEqual(changes(got)[3], ['insert', 4, 'four', start + 4])
    assert.ok(
      events.some((e) => e.type === 'subscription-resumed' && e.from === start + 3),
      JSON.stringify(events.map((e) => e.type)),
    )
    assert.equal(sub.lastChangeId, start + 4)

    // Later, elsewhere: pick up after a change id on the same agent.
    const again = await c.subscribe<T>('SELECT id, v FROM t WHERE id < 100', {
      from: start + 3,
      agent: sub.agent,
      signal: AbortSignal.timeout(WAIT_MS),
    })
    const it2 = again[Symbol.asyncIterator]()
    const got2: SubscriptionEvent<T>[] = []
    await readUntil(it2, got2, (es) => changes(es).length === 1)
    assert.deepEqual(changes(got2), [['insert', 4, 'four', start + 4]])
    await again.close()
  })

  it('client - updates: primary keys of inserted, updated and deleted rows', async (t) => {
    if (!needs(t, updatesRoute)) return
    const c = client()
    const writer = direct()
    await using updates = await c.updates<[number]>('t', { signal: AbortSignal.timeout(WAIT_MS) })
    const it = updates[Symbol.asyncIterator]()
    await writer.transaction(["INSERT INTO t (id, v) VALUES (50, 'x')"])
    await writer.transaction(["UPDATE t SET v = 'y' WHERE id = 50"])
    await writer.transaction(['DELETE FROM t WHERE id = 50'])
    // The agent sends each changed key once per tick with its latest state, so the three
    // commits arrive as one to three notifications; the last says the row is gone, and an
    // older state never follows a newer one.
    const got: { type: string; pk: [number] }[] = []
    while (got.at(-1)?.type !== 'delete') {
      const next = await it.next()
      assert.ok(next.done !== true)
      got.push(next.value)
    }
    assert.ok(got.length >= 1 && got.length <= 3, JSON.stringify(got))
    for (const e of got) assert.deepEqual(e.pk, [50])
    assert.ok(
      got.slice(0, -1).every((e) => e.type === 'update'),
      JSON.stringify(got),
    )
  })
})
