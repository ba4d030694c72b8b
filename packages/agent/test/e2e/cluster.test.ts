/**
 * Goal: real `patina agent` processes form a cluster over UDP/TCP on 127.0.0.1 and keep an
 * accurate member list: every agent lists every agent alive (itself included) after start; a
 * `kill -9`ed agent is reported down by all the others within the bound the LAN timing allows;
 * restarted with the same config (same actor id, new epoch) it is alive again everywhere and
 * listed once; 2,000 random datagrams on an agent's gossip port are dropped and counted without
 * disturbing it (it still answers /v1/health and /v1/members, and still sees everyone alive).
 *
 * Method: as cli.test.ts: `npx tsc -b` first, then NODES agents as child processes of the built
 * bin, each with a config in a temporary directory whose API and gossip ports were free a moment
 * before (a net server on port 0, closed); the 2nd..Nth bootstrap from the first. Conditions are
 * polled over HTTP with bounded waits. The down bound is derived from LAN_PROFILE: the longest
 * suspicion timeout for this cluster size plus two probe intervals and a margin. Children are
 * killed by their PIDs in `after`.
 */
import assert from 'node:assert/strict'
import { randomBytes, randomInt } from 'node:crypto'
import { createSocket } from 'node:dgram'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { LAN_PROFILE } from '../../src/membership/defaults.ts'
import { suspicionBounds } from '../../src/membership/suspicion.ts'
import {
  writeAgent,
  buildAgent,
  startAgent as start,
  stopAgent,
  waitExit,
  waitFor,
  type AgentProcess,
} from './agents.ts'
import { freePorts } from './ports.ts'

const NODES = 5
const STOP_TIMEOUT_MS = 10_000
const FORMATION_TIMEOUT_MS = 20_000
const FUZZ_PACKETS = 2000
/** The longest a suspicion can last here, plus detection (two probe intervals) and a margin. */
const DOWN_TIMEOUT_MS =
  suspicionBounds(
    NODES,
    LAN_PROFILE.suspicionMult,
    LAN_PROFILE.suspicionMaxTimeoutMult,
    LAN_PROFILE.probeIntervalMs,
  ).maxMs +
  2 * LAN_PROFILE.probeIntervalMs +
  3000
const REJOIN_TIMEOUT_MS = 15_000

interface Member {
  actor_id: string
  addr: string
  state: string
  incarnation: number
  rtt_ms: number | null
}

type Node = AgentProcess

let dir = ''
const nodes: Node[] = []

function node(i: number): Node {
  const n = nodes[i]
  assert.ok(n !== undefined)
  return n
}

async function members(n: Node): Promise<Member[]> {
  const res = await fetch(`${n.api}/v1/members`)
  assert.equal(res.status, 200)
  return (await res.json()) as Member[]
}

async function views(list: readonly Node[]): Promise<string> {
  const lines: string[] = []
  for (const n of list) {
    const ms = await members(n).catch(() => [])
    lines.push(`${n.name}: ${ms.map((m) => `${m.addr}=${m.state}`).join(' ')}`)
  }
  return lines.join('\n')
}

/** Every node in `list` lists every node of `expected` once, in `state`, and nothing else. */
async function allSee(list: readonly Node[], expected: Map<string, string>): Promise<boolean> {
  for (const n of list) {
    const ms = await members(n)
    if (ms.length !== expected.size) return false
    for (const m of ms) if (expected.get(m.addr) !== m.state) return false
  }
  return true
}

function gossipAddr(n: Node): string {
  return `127.0.0.1:${n.gossipPort}`
}

before(async () => {
  buildAgent()
  dir = mkdtempSync(join(tmpdir(), 'patina-cluster-'))
  const ports = await freePorts(2 * NODES)
  for (let i = 0; i < NODES; i++) {
    const name = `node-${i + 1}`
    const apiPort = ports[2 * i] ?? 0
    const gossipPort = ports[2 * i + 1] ?? 0
    nodes.push(
      writeAgent(dir, { name, apiPort, gossipPort, bootstrap: i === 0 ? [] : [ports[1] ?? 0] }),
    )
  }
  await Promise.all(nodes.map(start))
})

after(async () => {
  for (const n of nodes) await stopAgent(n, 'SIGKILL', STOP_TIMEOUT_MS).catch(() => undefined)
  if (dir !== '') rmSync(dir, { recursive: true, force: true })
})

describe('e2e - a cluster of patina agents', () => {
  it(`e2e - ${NODES} agents each list all ${NODES} alive, themselves included`, async () => {
    const expected = new Map(nodes.map((n) => [gossipAddr(n), 'alive']))
    const ms = await waitFor(
      'every agent lists every agent alive',
      FORMATION_TIMEOUT_MS,
      () => allSee(nodes, expected),
      () => views(nodes),
    )
    process.stdout.write(`# formation: ${Math.round(ms)} ms\n`)
    for (const n of nodes) {
      const health = (await (await fetch(`${n.api}/v1/health`)).json()) as {
        response: { members: number }
      }
      assert.equal(health.response.members, NODES)
      const list = await members(n)
      assert.equal(new Set(list.map((m) => m.actor_id)).size, NODES)
      for (const m of list) {
        assert.match(m.actor_id, /^[0-9a-f]{32}$/)
        assert.equal(typeof m.incarnation, 'number')
        assert.ok(m.rtt_ms === null || typeof m.rtt_ms === 'number')
      }
    }
  })

  it(`e2e - ${FUZZ_PACKETS} random datagrams leave an agent answering and its view intact`, async () => {
    const target = node(1)
    const socket = createSocket('udp4')
    try {
      for (let i = 0; i < FUZZ_PACKETS; i++) {
        const bytes = randomBytes(randomInt(0, 1500))
        await new Promise<void>((resolve) => {
          socket.send(bytes, target.gossipPort, '127.0.0.1', () => {
            resolve()
          })
        })
        if (i % 100 === 99) await new Promise((resolve) => setTimeout(resolve, 5))
      }
    } finally {
      socket.close()
    }
    const health = await fetch(`${target.api}/v1/health`)
    assert.equal(health.status, 200)
    const expected = new Map(nodes.map((n) => [gossipAddr(n), 'alive']))
    await waitFor(
      'every agent still lists every agent alive',
      FORMATION_TIMEOUT_MS,
      () => allSee(nodes, expected),
      () => views(nodes),
    )
    const metrics = await (await fetch(`${target.api}/metrics`)).text()
    let dropped = 0
    for (const m of metrics.matchAll(
      /^patina_(?:swim_packets_dropped|gossip_udp_dropped)_total\{reason="[a-z_]+"\} (\d+)$/gm,
    )) {
      dropped += Number(m[1])
    }
    assert.ok(dropped >= FUZZ_PACKETS / 2, `only ${dropped} drops counted:\n${metrics}`)
  })

  it('e2e - a kill -9ed agent is reported down by every other agent', async () => {
    const victim = node(NODES - 1)
    const child = victim.child
    assert.ok(child?.pid !== undefined)
    process.kill(child.pid, 'SIGKILL')
    await waitExit(child, STOP_TIMEOUT_MS)
    const others = nodes.filter((n) => n !== victim)
    const expected = new Map(nodes.map((n) => [gossipAddr(n), n === victim ? 'down' : 'alive']))
    const ms = await waitFor(
      `the others report ${victim.name} down`,
      DOWN_TIMEOUT_MS,
      () => allSee(others, expected),
      () => views(others),
    )
    process.stdout.write(`# down after: ${Math.round(ms)} ms (bound ${DOWN_TIMEOUT_MS} ms)\n`)
  })

  it('e2e - restarted with the same config it is alive again and listed once', async () => {
    const victim = node(NODES - 1)
    const before = (await members(node(0))).find((m) => m.addr === gossipAddr(victim))
    assert.equal(before?.state, 'down')
    await start(victim)
    const expected = new Map(nodes.map((n) => [gossipAddr(n), 'alive']))
    const ms = await waitFor(
      `every agent lists ${victim.name} alive again`,
      REJOIN_TIMEOUT_MS,
      () => allSee(nodes, expected),
      () => views(nodes),
    )
    process.stdout.write(`# rejoin: ${Math.round(ms)} ms\n`)
    for (const n of nodes) {
      const list = await members(n)
      const entries = list.filter((m) => m.addr === gossipAddr(victim))
      assert.equal(entries.length, 1)
      assert.equal(entries[0]?.actor_id, before.actor_id, 'same actor id after restart')
      assert.equal(new Set(list.map((m) => m.actor_id)).size, list.length)
    }
  })
})
