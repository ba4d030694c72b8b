/**
 * Membership in the deterministic simulator (virtual time, LAN links of 0.5-2.5 ms one way):
 * 1. time to a full view for 100 and 500 nodes joining through one bootstrap address;
 * 2. crash detection time (first member to declare the crashed one down, and the last) over
 *    many seeds, against SWIM's expected first-detection time plus the suspicion timeout
 *    bounds, and against the bound the tests assert;
 * 3. false positives under 5% and 20% packet loss, Lifeguard (the defaults) against plain SWIM
 *    (no local health, no nacks, no buddy system, suspicion fixed at its minimum).
 *
 * Every figure is virtual (simulated) time, so it does not depend on this machine; wall time is
 * printed for information. `BENCH_QUICK=1` divides sizes and seed counts by 10.
 *
 * Not registered in bench/run.ts (its modules are synchronous); run it alone with
 * `node --import tsx -e "import('./bench/membership-sim.ts').then((m) => m.run())"`.
 */
import { LAN_PROFILE, type SwimOptions } from '../packages/agent/src/membership/defaults.ts'
import { suspicionBounds } from '../packages/agent/src/membership/suspicion.ts'
import type { LinkProfile } from '../packages/agent/src/sim/network.ts'
import { Sim } from '../packages/agent/src/sim/sim.ts'
import { addrOf, SwimCluster } from '../packages/agent/src/sim/swim-cluster.ts'
import {
  renderTable,
  scaled,
  stats,
  type BenchReport,
  type ResultTable,
  type SummaryLine,
} from './lib/common.ts'

const LAN: Partial<LinkProfile> = { latencyMs: 0.5, jitterMs: 2 }

/** Plain SWIM with suspicion: every Lifeguard mechanism off. */
const PLAIN_SWIM: Partial<SwimOptions> = {
  localHealthMax: 0,
  nacks: false,
  buddySystem: false,
  suspicionMaxTimeoutMult: 1,
}

function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[i] ?? Number.NaN
}

const s1 = (ms: number): string => (ms / 1000).toFixed(1)

// ------------------------------------------------------------------------------ full view

interface ViewRun {
  readonly fromLastStartMs: number
  readonly fromFirstStartMs: number
  readonly wallMs: number
  readonly datagramsPerNodePerS: number
}

async function fullView(n: number, seed: number, startSpreadMs: number): Promise<ViewRun> {
  const wall = performance.now()
  const sim = new Sim({ seed, link: LAN, trace: false })
  const cluster = new SwimCluster(sim, { recordChanges: false })
  const bootstrap = [addrOf(0)]
  cluster.add({ index: 0, bootstrap })
  let last = 0
  for (let i = 1; i < n; i++) {
    const at = sim.random.float() * startSpreadMs
    last = Math.max(last, at)
    sim.scheduler.at(at, () => cluster.add({ index: i, bootstrap }))
  }
  await sim.runFor(startSpreadMs)
  const ok = await sim.runUntil(() => cluster.converged(), {
    timeoutMs: 600_000,
    checkEveryMs: 100,
  })
  if (!ok) throw new Error(`${n} nodes did not converge (seed ${seed})`)
  return {
    fromLastStartMs: sim.now() - last,
    fromFirstStartMs: sim.now(),
    wallMs: performance.now() - wall,
    datagramsPerNodePerS: sim.network.stats.datagramsSent / n / (sim.now() / 1000),
  }
}

// ------------------------------------------------------------------------------ crash detection

async function crashDetection(
  n: number,
  seed: number,
): Promise<{ suspectMs: number; firstMs: number; allMs: number }> {
  const sim = new Sim({ seed, link: LAN, trace: false })
  const cluster = new SwimCluster(sim)
  cluster.addMany(n)
  const ok = await sim.runUntil(() => cluster.converged(), { timeoutMs: 120_000, checkEveryMs: 50 })
  if (!ok) throw new Error(`no view (seed ${seed})`)
  await sim.runFor(sim.random.float() * 5000)
  const victim = addrOf(sim.random.int(n))
  const actor = cluster.actorOf(victim)
  const crashedAt = sim.now()
  cluster.host(victim).crash()
  const others = cluster.live()
  await sim.runUntil(() => others.every((a) => cluster.swim(a)?.member(actor)?.state === 'down'), {
    timeoutMs: 600_000,
    checkEveryMs: 20,
  })
  const times = cluster.downsOf(victim).map((e) => e.atMs - crashedAt)
  const suspected = cluster.changes.find(
    (e) => e.atMs >= crashedAt && e.member.actorId === actor && e.member.state === 'suspect',
  )
  return {
    suspectMs: (suspected?.atMs ?? Number.NaN) - crashedAt,
    firstMs: Math.min(...times),
    allMs: Math.max(...times),
  }
}

// ------------------------------------------------------------------------------ false positives

interface LossRun {
  readonly suspicions: number
  readonly falseDowns: number
  readonly refutations: number
  readonly meanLocalHealth: number
}

async function underLoss(
  n: number,
  loss: number,
  durationMs: number,
  seed: number,
  swim: Partial<SwimOptions>,
): Promise<LossRun> {
  const sim = new Sim({ seed, link: { ...LAN, loss }, trace: false })
  const cluster = new SwimCluster(sim, { swim, recordChanges: false })
  cluster.addMany(n)
  await sim.runFor(10_000)
  const downsBefore = cluster.downs.length
  let healthSum = 0
  let samples = 0
  const sample = (): void => {
    for (const a of cluster.addrs()) healthSum += cluster.swim(a)?.localHealth() ?? 0
    samples += n
    sim.scheduler.after(1000, sample)
  }
  sim.scheduler.after(1000, sample)
  const before = cluster.addrs().map((a) => cluster.swim(a)?.stats())
  await sim.runFor(durationMs)
  let suspicions = 0
  let refutations = 0
  cluster.addrs().forEach((a, i) => {
    const s = cluster.swim(a)?.stats()
    suspicions += (s?.suspicionsRaised ?? 0) - (before[i]?.suspicionsRaised ?? 0)
    refutations += (s?.falseSuspicionRefutations ?? 0) - (before[i]?.falseSuspicionRefutations ?? 0)
  })
  // A live member declared down counts once per life (the first observer), however many hear it.
  const lives = new Set(
    cluster.downs.slice(downsBefore).map((e) => `${e.member.actorId}/${e.member.epoch}`),
  )
  return {
    suspicions,
    falseDowns: lives.size,
    refutations,
    meanLocalHealth: samples === 0 ? 0 : healthSum / samples,
  }
}

// ------------------------------------------------------------------------------ report

export async function measureMembership(
  progress: (line: string) => void = () => undefined,
): Promise<BenchReport> {
  const tables: ResultTable[] = []
  const summary: SummaryLine[] = []
  const data: Record<string, unknown> = {}

  // 1. Full view.
  const viewRows: string[][] = []
  for (const [n, seeds] of [
    [scaled(100), scaled(5)],
    [scaled(500), Math.max(1, scaled(2))],
  ] as const) {
    const runs: ViewRun[] = []
    for (let seed = 1; seed <= seeds; seed++) {
      progress(`full view: ${n} nodes, seed ${seed}`)
      runs.push(await fullView(n, seed, 5000))
    }
    const last = stats(runs.map((r) => r.fromLastStartMs))
    const first = stats(runs.map((r) => r.fromFirstStartMs))
    const rate = stats(runs.map((r) => r.datagramsPerNodePerS))
    const wall = stats(runs.map((r) => r.wallMs))
    viewRows.push([
      String(n),
      String(seeds),
      `${s1(last.median)} [${s1(last.min)}-${s1(last.max)}]`,
      `${s1(first.median)} [${s1(first.min)}-${s1(first.max)}]`,
      rate.median.toFixed(1),
      s1(wall.median),
    ])
    summary.push({
      metric: `full view, ${n} nodes (s after the last start)`,
      value: s1(last.median),
    })
    data[`fullView${n}`] = runs
  }
  tables.push({
    title: 'Time to a full view (virtual seconds): one bootstrap address, starts spread over 5 s',
    headers: [
      'nodes',
      'seeds',
      'after last start',
      'after first start',
      'datagrams/node/s',
      'wall s',
    ],
    rows: viewRows,
    notes: [
      'full view: every node lists every node alive at its current epoch',
      'datagrams/node/s: all SWIM datagrams sent over the run, per node and virtual second',
    ],
  })

  // 2. Crash detection.
  const o = LAN_PROFILE
  const crashRows: string[][] = []
  for (const [n, seeds] of [
    [8, scaled(200)],
    [25, scaled(100)],
    [100, scaled(20)],
  ] as const) {
    const suspect: number[] = []
    const first: number[] = []
    const all: number[] = []
    for (let seed = 1; seed <= seeds; seed++) {
      if (seed % 20 === 1) progress(`crash detection: ${n} nodes, seed ${seed}/${seeds}`)
      const r = await crashDetection(n, 10_000 + seed)
      suspect.push(r.suspectMs)
      first.push(r.firstMs)
      all.push(r.allMs)
    }
    const b = suspicionBounds(n, o.suspicionMult, o.suspicionMaxTimeoutMult, o.probeIntervalMs)
    // SWIM: the expected time from a failure to its first detection (a failed probe) is
    // T / (1 - e^-qf) with qf the fraction of healthy members, about T / (1 - 1/e).
    const swimFirstMs = o.probeIntervalMs / (1 - Math.exp(-(n - 1) / n))
    const asserted = 11 * o.probeIntervalMs + b.maxMs + 2000
    crashRows.push([
      String(n),
      String(seeds),
      `${s1(quantile(suspect, 0.5))} (${s1(swimFirstMs)})`,
      s1(quantile(first, 0.5)),
      s1(quantile(first, 0.99)),
      s1(quantile(all, 0.5)),
      s1(quantile(all, 0.99)),
      `${s1(swimFirstMs + b.minMs)}-${s1(swimFirstMs + b.maxMs)}`,
      s1(asserted),
    ])
    summary.push({
      metric: `crash detection, ${n} nodes: all down p99 (s)`,
      value: s1(quantile(all, 0.99)),
      goal: `<= ${s1(asserted)} (test bound)`,
      met: quantile(all, 0.99) <= asserted,
    })
    data[`crash${n}`] = { suspect, first, all, minMs: b.minMs, maxMs: b.maxMs, swimFirstMs }
  }
  tables.push({
    title: 'Crash detection (virtual seconds from the crash), LAN profile',
    headers: [
      'nodes',
      'seeds',
      'suspect p50 (SWIM)',
      'first p50',
      'first p99',
      'all p50',
      'all p99',
      'SWIM expected + susp. min-max',
      'test bound',
    ],
    rows: crashRows,
    notes: [
      'suspect: first suspicion of it (in brackets the SWIM paper expectation, T/(1-e^-qf))',
      'first: the first member to declare it down; all: the last live member to do so',
      'SWIM expected: that first detection (T = 1 s probe period), then the suspicion timeout,',
      '  which Lifeguard shrinks from max towards min with independent confirmations',
      'test bound: 11 T + suspicion max + 2 s (asserted by test/sim/crash.test.ts)',
    ],
  })

  // 3. False positives under loss.
  const n = 20
  const durationMs = scaled(600_000)
  const seeds = Math.max(1, scaled(5))
  const lossRows: string[][] = []
  for (const loss of [0.05, 0.2]) {
    for (const [name, swim] of [
      ['Lifeguard (defaults)', {}],
      ['plain SWIM', PLAIN_SWIM],
    ] as const) {
      let suspicions = 0
      let falseDowns = 0
      let refutations = 0
      let health = 0
      for (let seed = 1; seed <= seeds; seed++) {
        progress(`loss ${loss * 100}%: ${name}, seed ${seed}`)
        const r = await underLoss(n, loss, durationMs, 20_000 + seed, swim)
        suspicions += r.suspicions
        falseDowns += r.falseDowns
        refutations += r.refutations
        health += r.meanLocalHealth / seeds
      }
      const nodeHours = (n * seeds * durationMs) / 3_600_000
      const probes = (n * seeds * durationMs) / o.probeIntervalMs
      lossRows.push([
        `${loss * 100}%`,
        name,
        (suspicions / nodeHours).toFixed(1),
        ((suspicions / probes) * 100).toFixed(2),
        (falseDowns / nodeHours).toFixed(2),
        String(falseDowns),
        String(refutations),
        health.toFixed(2),
      ])
      summary.push({
        metric: `false downs per node-hour at ${loss * 100}% loss, ${name}`,
        value: (falseDowns / nodeHours).toFixed(2),
      })
      data[`loss${loss}-${name}`] = { suspicions, falseDowns, refutations, health, nodeHours }
    }
  }
  tables.push({
    title: `False positives under packet loss (${n} nodes, ${seeds} seeds x ${s1(durationMs)} s, nobody fails)`,
    headers: [
      'loss',
      'protocol',
      'suspicions/node-h',
      'suspicions/probe %',
      'false downs/node-h',
      'false downs',
      'refutations',
      'mean LHM',
    ],
    rows: lossRows,
    notes: [
      'loss applies to every datagram on every link (streams are not lossy)',
      'a false down is a live member (one life) declared down by anyone',
      'plain SWIM: localHealthMax 0, nacks off, buddy system off, suspicion fixed at min',
    ],
  })
  return { tables, summary, data }
}

/** Runs the measurements and prints their tables. */
export async function run(): Promise<void> {
  const started = performance.now()
  const report = await measureMembership((line) => {
    process.stderr.write(`  · ${line}\n`)
  })
  for (const table of report.tables) process.stdout.write(`${renderTable(table)}\n\n`)
  const seconds = ((performance.now() - started) / 1000).toFixed(1)
  process.stdout.write(`(membership-sim took ${seconds} s of wall time)\n`)
}
