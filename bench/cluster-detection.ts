/**
 * Cluster benchmark: on loopback, how long real `patina agent` processes take to report a
 * `kill -9`ed agent suspect and down.
 *
 * Method: AGENTS agents (10; 5 with BENCH_QUICK=1) run as child processes of the built bin
 * (`node packages/agent/bin/patina.js agent -c <config>`), each with a config in a temporary
 * directory, API and gossip on free 127.0.0.1 ports, the 2nd..Nth bootstrapping from the first,
 * LAN profile. Once every agent's `GET /v1/members` lists every agent alive, one agent (not the
 * bootstrap one) is sent SIGKILL by its PID; every other agent's `/v1/members` is then polled
 * every POLL_MS and, per agent, the time from the kill until it first lists the victim as
 * suspect and as down is recorded. A fresh cluster per repeat (3; 1 with BENCH_QUICK=1). Every
 * process started is stopped by its PID (SIGTERM, SIGKILL after a grace period), also on error.
 *
 * The theoretical bound is the one bench/membership-sim.ts prints: SWIM's expected first
 * detection T / (1 - e^-qf) (T the probe interval, qf the fraction of healthy members) plus the
 * suspicion timeout, which Lifeguard shrinks from its max towards its min with confirmations.
 */
import { join } from 'node:path'
import { LAN_PROFILE } from '../packages/agent/src/membership/defaults.ts'
import { suspicionBounds } from '../packages/agent/src/membership/suspicion.ts'
import {
  clusterSpecs,
  members,
  sleep,
  startCluster,
  stopAll,
  waitAllAlive,
  type Agent,
} from './lib/agents.ts'
import { QUICK, type BenchContext, type BenchModule, type BenchReport } from './lib/common.ts'
import { percentile } from './lib/http.ts'

const AGENTS = QUICK ? 5 : 10
const RUNS = QUICK ? 1 : 3
const POLL_MS = 50
const FORMATION_TIMEOUT_MS = 30_000

interface RunResult {
  readonly formationMs: number
  /** Per surviving agent: ms from the kill until it listed the victim suspect (null: not seen). */
  readonly suspectMs: readonly (number | null)[]
  /** Per surviving agent: ms from the kill until it listed the victim down. */
  readonly downMs: readonly number[]
}

async function oneRun(
  dir: string,
  timeoutMs: number,
  progress: (l: string) => void,
): Promise<RunResult> {
  const agents: Agent[] = await startCluster(
    await clusterSpecs({ dir, count: AGENTS, settings: { gossip: { profile: 'lan' } } }),
  )
  try {
    const formationMs = await waitAllAlive(agents, FORMATION_TIMEOUT_MS)
    // Let the probe rounds settle (RTTs, local health) before the kill.
    await sleep(2 * LAN_PROFILE.probeIntervalMs)
    const victim = agents[AGENTS - 1]
    if (victim === undefined) throw new Error('no victim')
    const others = agents.filter((a) => a !== victim)
    progress(`formation ${(formationMs / 1000).toFixed(1)} s; kill -9 ${victim.name}`)
    const killedAt = performance.now()
    // SIGKILL now (the call sends it before it first waits); resolves once the victim is gone.
    const killed = victim.kill()
    const suspect = new Map<Agent, number>()
    const down = new Map<Agent, number>()
    while (down.size < others.length) {
      const pollAt = performance.now()
      if (pollAt - killedAt > timeoutMs) {
        const missing = others.filter((a) => !down.has(a)).map((a) => a.name)
        throw new Error(`${missing.join(', ')} did not report the victim down in ${timeoutMs} ms`)
      }
      await Promise.all(
        others
          .filter((a) => !down.has(a))
          .map(async (a) => {
            const list = await members(a).catch(() => [])
            const state = list.find((m) => m.addr === victim.gossip)?.state
            const at = performance.now() - killedAt
            if (state === 'suspect' && !suspect.has(a)) suspect.set(a, at)
            if (state === 'down') down.set(a, at)
          }),
      )
      await sleep(Math.max(0, POLL_MS - (performance.now() - pollAt)))
    }
    await killed
    return {
      formationMs,
      suspectMs: others.map((a) => suspect.get(a) ?? null),
      downMs: others.map((a) => down.get(a) ?? 0),
    }
  } finally {
    await stopAll(agents)
  }
}

const s1 = (ms: number): string => (ms / 1000).toFixed(1)
const s2 = (ms: number): string => (ms / 1000).toFixed(2)

async function run(ctx: BenchContext): Promise<BenchReport> {
  const o = LAN_PROFILE
  const n = AGENTS
  const b = suspicionBounds(n, o.suspicionMult, o.suspicionMaxTimeoutMult, o.probeIntervalMs)
  const swimFirstMs = o.probeIntervalMs / (1 - Math.exp(-(n - 1) / n))
  const boundMinMs = swimFirstMs + b.minMs
  const boundMaxMs = swimFirstMs + b.maxMs
  const timeoutMs = boundMaxMs + 15_000
  const runs: RunResult[] = []
  for (let r = 0; r < RUNS; r++) {
    ctx.progress(`cluster detection: run ${r + 1}/${RUNS}, ${n} agents`)
    runs.push(
      await oneRun(join(ctx.dir, `cluster-detection-${r + 1}`), timeoutMs, (line) => {
        ctx.progress(line)
      }),
    )
  }
  const down = runs.flatMap((r) => r.downMs).sort((x, y) => x - y)
  const suspectSeen = runs
    .flatMap((r) => r.suspectMs)
    .filter((x): x is number => x !== null)
    .sort((x, y) => x - y)
  const observations = down.length
  const rows = runs.map((r, i) => {
    const d = [...r.downMs].sort((x, y) => x - y)
    const s = r.suspectMs.filter((x): x is number => x !== null).sort((x, y) => x - y)
    return [
      String(i + 1),
      s1(r.formationMs),
      s.length === 0 ? '-' : `${s2(s[0] ?? 0)} / ${s2(percentile(s, 0.5))}`,
      `${s.length}/${r.suspectMs.length}`,
      s2(d[0] ?? 0),
      s2(percentile(d, 0.5)),
      s2(d[d.length - 1] ?? 0),
    ]
  })
  const p50 = percentile(down, 0.5)
  const p99 = percentile(down, 0.99)
  const max = down[down.length - 1] ?? 0
  return {
    tables: [
      {
        title: `kill -9 of 1 of ${n} agents on loopback, LAN profile: seconds from the kill`,
        headers: [
          'run',
          'formation',
          'suspect first / p50',
          'suspect seen',
          'down first',
          'down p50',
          'down max',
        ],
        rows,
        notes: [
          `each surviving agent's /v1/members polled every ${POLL_MS} ms; a fresh cluster per run`,
          'formation: from the last agent started to every agent listing every agent alive',
          'suspect seen: agents whose poll caught the victim suspect before down',
        ],
      },
      {
        title: `"down" across agents and runs (${observations} observations) vs the LAN bound`,
        headers: ['p50', 'p99', 'max', 'SWIM expected first detection', 'expected + susp. min-max'],
        rows: [[s2(p50), s2(p99), s2(max), s2(swimFirstMs), `${s1(boundMinMs)}-${s1(boundMaxMs)}`]],
        notes: [
          `bound as bench/membership-sim.ts: T/(1-e^-qf) with T = ${o.probeIntervalMs} ms, then`,
          `  the suspicion timeout for ${n} members, ${s1(b.minMs)} s (min) to ${s1(b.maxMs)} s (max)`,
        ],
      },
    ],
    summary: [
      {
        metric: `kill -9 detection, ${n} real agents: down p99 (s)`,
        value: s2(p99),
        goal: `<= ${s1(boundMaxMs)} (SWIM expected + suspicion max)`,
        met: p99 <= boundMaxMs,
      },
    ],
    data: {
      agents: n,
      runs: RUNS,
      pollMs: POLL_MS,
      swimFirstMs,
      suspicionMinMs: b.minMs,
      suspicionMaxMs: b.maxMs,
      boundMinMs,
      boundMaxMs,
      p50,
      p99,
      max,
      suspectSeen,
      perRun: runs,
    },
  }
}

export const clusterDetection: BenchModule = {
  name: 'cluster-detection',
  title: 'On loopback: detection time of kill -9 with 10 real agents',
  run,
}
