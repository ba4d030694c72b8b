/**
 * Evaluations: turning queued changed keys (or "re-run everything") into change events.
 *
 * Every evaluation runs its SQL in a reader process (a read-only connection of its own, with a
 * timeout), so a slow or failing subscription query never blocks the agent's event loop, its
 * writes or the other subscriptions beyond its turn. Results are staged and diffed against the
 * stored result in the subscriptions database (subs-store.ts), one transaction per evaluation.
 *
 * Kinds of evaluation:
 * - first: a new subscription's whole result, stored without change events (listeners get it
 *   as rows);
 * - full: the whole query again, diffed against everything stored (restart reconciliation,
 *   queue overflow, a lost batch, and every change for full-mode subscriptions);
 * - keys: an incremental subscription's query restricted to changed keys (incremental-sql.ts),
 *   diffed against the stored rows those keys reach, in chunks of SUBS_EVAL_KEYS_MAX keys.
 *
 * The main-thread part of each (staging the rows a reader returns, applying the diff) runs in
 * slices of about SUBS_SLICE_MS (slicer.ts) and yields to the event loop in between, each
 * labelled for the event-loop monitor (`activity`). Each slice of a diff is published as it is
 * committed (`publish`): the events and change ids are those of a diff applied at once. The
 * scheduler runs one evaluation per subscription at a time, so a commit that arrives between
 * two slices only queues its keys: they are matched by the next evaluation, against the
 * result this one leaves.
 */
import { encodeCells } from '@patina/protocol'
import { packPk, unpackPk } from '../crdt/pk-codec.ts'
import type { SqlValue } from '../crdt/values.ts'
import { activity } from '../metrics/event-loop.ts'
import type { QueryEvent } from '../query/reader-pool.ts'
import type { Clock } from '../runtime/clock.ts'
import { messageOf, SubsError } from './errors.ts'
import { identityKeys, rowIdentity, type IdentityItem } from './identity.ts'
import { probeQuery, restrictedQuery, type Restriction } from './incremental-sql.ts'
import type { IncrementalPlan, Plan } from './planner.ts'
import { Slicer } from './slicer.ts'
import {
  DuplicateIdentityError,
  type DiffOptions,
  type DiffResult,
  type Scope,
  type StageMode,
  type StagedRow,
  type SubsStore,
} from './subs-store.ts'
import type { Subscription } from './subscription.ts'

/** What evaluations need of a reader pool (query/reader-pool.ts). */
export interface EvalRunner {
  query(
    sql: string,
    params?: Readonly<Record<string, SqlValue>>,
    signal?: AbortSignal,
  ): AsyncIterable<QueryEvent> & AsyncIterator<QueryEvent>
}

export interface MatcherOptions {
  readonly runner: EvalRunner
  readonly store: SubsStore
  readonly evalKeysMax: number
  readonly historyMax: number
  /** Measures slices and yields between them (`defer`). */
  readonly clock: Clock
  /** The time budget of a slice of main-thread work (SUBS_SLICE_MS). */
  readonly sliceMs: number
}

export type EvalKind = 'first' | 'full' | 'keys'

/** Takes each committed slice of a diff, in order (fan-out). */
export type Publish = (diff: DiffResult) => void

/**
 * A failure of one evaluation that says nothing bad about the subscription (the reader pool is
 * busy or restarting, SQLite is busy): its work is redone later by a full re-run.
 */
export class TransientEvalError extends Error {
  override readonly name = 'TransientEvalError'
}

/** SQLite result codes of a reader that mean "try again", not "this query is broken". */
const TRANSIENT_SQLITE = /^SQLITE_(BUSY|LOCKED|IOERR|NOMEM|FULL|CANTOPEN|PROTOCOL)/

/**
 * Runs the next unit of work of `sub`, handing each committed slice of its diffs to `publish`
 * as it goes; returns its kind. Throws TransientEvalError or the failure (slices published
 * before stay published: they are committed).
 */
export async function evaluate(
  sub: Subscription,
  o: MatcherOptions,
  publish: Publish,
): Promise<EvalKind> {
  const slicer = new Slicer(o.clock, o.sliceMs)
  if (sub.state === 'loading') {
    await runFull(sub, o, false, slicer, publish)
    return 'first'
  }
  if (sub.needsFull) {
    sub.startFullRun()
    await runFull(sub, o, true, slicer, publish)
    return 'full'
  }
  const plan = sub.plan
  if (plan.mode === 'incremental') await runKeys(sub, plan, o, slicer, publish)
  return 'keys'
}

/** Applies what evaluation `diff.ev` staged, a slice at a time, publishing each slice. */
async function applySliced(
  sub: Subscription,
  o: MatcherOptions,
  diff: DiffOptions,
  slicer: Slicer,
  publish: Publish,
): Promise<void> {
  const progress = o.store.beginDiff(diff)
  for (;;) {
    if (!sub.active) throw new TransientEvalError('the subscription was dropped')
    const slice = activity.run('subs: apply diff', () =>
      o.store.applyDiffSlice(progress, slicer.more),
    )
    publish(slice)
    if (progress.phase === 'done') return
    await slicer.pause()
  }
}

function identityItems(plan: IncrementalPlan): IdentityItem[] {
  return plan.items.map((it) => ({ pkColumns: it.pk.length, nullable: it.nullable }))
}

/** Turns result rows into staged rows: values as JSON text, and their identity. */
function stager(plan: Plan): (row: readonly SqlValue[]) => StagedRow {
  const n = plan.columns.length
  if (plan.mode === 'full') {
    return (row) => {
      const vals = encodeCells(row)
      return { ident: Buffer.from(vals), vals, prefix: null }
    }
  }
  const items = identityItems(plan)
  return (row) => {
    const id = rowIdentity(items, row.slice(n), plan.hasLeftJoin)
    return { ident: id.ident, vals: encodeCells(row.slice(0, n)), prefix: id.prefix }
  }
}

function expectedColumns(plan: Plan): number {
  return plan.mode === 'full'
    ? plan.columns.length
    : plan.columns.length + plan.items.reduce((n, it) => n + it.pk.length, 0)
}

/** Runs one statement in a reader and hands its row batches to `onRows`. */
async function run(
  sub: Subscription,
  o: MatcherOptions,
  sql: string,
  params: Readonly<Record<string, SqlValue>>,
  columns: number,
  slicer: Slicer,
  onRows: (rows: readonly (readonly SqlValue[])[]) => void,
): Promise<void> {
  let stream: AsyncIterator<QueryEvent>
  try {
    stream = o.runner.query(sql, params, sub.signal)
  } catch (err) {
    throw classify(err)
  }
  try {
    for (;;) {
      let next: IteratorResult<QueryEvent>
      try {
        next = await stream.next()
      } catch (err) {
        throw classify(err)
      }
      if (next.done === true) return
      const event = next.value
      if (!sub.active) throw new TransientEvalError('the subscription was dropped')
      if (event.kind === 'columns') {
        // `SELECT *` grows when a column is added: the stored result no longer fits.
        if (event.columns.length !== columns) {
          throw new SubsError(
            'FAILED',
            `the query now returns ${event.columns.length - columns + sub.plan.columns.length} ` +
              `columns instead of ${sub.plan.columns.length} (the schema changed); subscribe again`,
          )
        }
      } else if (event.kind === 'rows') {
        activity.run('subs: stage rows', () => {
          onRows(event.rows)
        })
        // Buffered batches resolve `next()` at once: without this, a long result would be
        // staged in one turn of the event loop.
        await slicer.pause()
      }
    }
  } finally {
    await stream.return?.()
  }
}

/** An error of the subscriptions database that may pass (busy, disk full, I/O). */
export function isTransientStoreError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && TRANSIENT_SQLITE.test(code)
}

function classify(err: unknown): Error {
  const e = err as { code?: unknown; sqliteCode?: unknown }
  if (e.code === 'OVERLOADED' || e.code === 'CLOSED') {
    return new TransientEvalError(messageOf(err), { cause: err })
  }
  if (typeof e.sqliteCode === 'string' && TRANSIENT_SQLITE.test(e.sqliteCode)) {
    return new TransientEvalError(messageOf(err), { cause: err })
  }
  if (e.code === 'ROW_TOO_LARGE') {
    // Refused in the reader ([api] max_row_bytes): the subscription fails with that reason.
    return new SubsError('ROW_TOO_LARGE', messageOf(err), { cause: err })
  }
  if (e.code === 'TIMEOUT') {
    return new SubsError('TIMEOUT', `evaluating the subscription took too long: ${messageOf(err)}`)
  }
  return new SubsError('SQL_ERROR', messageOf(err), { cause: err })
}

async function runFull(
  sub: Subscription,
  o: MatcherOptions,
  log: boolean,
  slicer: Slicer,
  publish: Publish,
): Promise<void> {
  const plan = sub.plan
  const ev = o.store.beginEval()
  const toStaged = stager(plan)
  const mode: StageMode = plan.mode === 'full' ? 'count' : 'unique'
  let seq = 0
  try {
    await run(sub, o, plan.fullSql, plan.params, expectedColumns(plan), slicer, (rows) => {
      o.store.stage(ev, seq, rows.map(toStaged), mode)
      seq += rows.length
    })
    const diff: DiffOptions = {
      num: sub.num,
      ev,
      scope: { kind: 'all' },
      itemCount: plan.mode === 'full' ? 0 : plan.items.length,
      log,
      historyMax: o.historyMax,
    }
    await applySliced(sub, o, diff, slicer, publish)
  } catch (err) {
    if (err instanceof DuplicateIdentityError) throw new SubsError('FAILED', err.message)
    throw err
  } finally {
    o.store.endEval(ev)
  }
}

/** Packed key of each value list, canonical (so it equals what identities hold). */
function decodeKeys(keys: readonly Uint8Array[]): { packed: Buffer; values: SqlValue[] }[] {
  return keys.map((pk) => {
    const values = unpackPk(pk)
    return { packed: Buffer.from(packPk(values)), values }
  })
}

/** The values of a stored key prefix (the packed keys of the non-nullable items). */
function prefixValues(prefix: Buffer, preservedItems: number): SqlValue[] {
  return identityKeys(prefix, preservedItems).flatMap((k) => (k === null ? [] : unpackPk(k)))
}

async function runKeys(
  sub: Subscription,
  plan: IncrementalPlan,
  o: MatcherOptions,
  slicer: Slicer,
  publish: Publish,
): Promise<void> {
  const taken = sub.takeKeys(o.evalKeysMax)
  const keysByItem = new Map<number, SqlValue[][]>()
  const itemKeys: { item: number; key: Buffer }[] = []
  const prefixes = new Map<string, Buffer>()
  const preserved = plan.items.filter((it) => !it.nullable).length
  const prefixOf = identityItems(plan).slice(0, preserved)
  const preservedColumns = prefixOf.reduce((n, it) => n + it.pkColumns, 0)
  for (const [index, item] of plan.items.entries()) {
    const raw = taken.get(item.table.toLowerCase())
    if (raw === undefined) continue
    const keys = decodeKeys(raw)
    if (!item.nullable) {
      keysByItem.set(
        index,
        keys.map((k) => k.values),
      )
      for (const k of keys) itemKeys.push({ item: index, key: k.packed })
      continue
    }
    // A row on the right of a LEFT JOIN changed: recompute every left-hand row it joined to
    // before (stored) or joins to now (probe), "no match" rows included.
    for (const k of keys) {
      for (const p of o.store.prefixesOf(sub.num, index, k.packed)) {
        prefixes.set(p.toString('latin1'), p)
      }
    }
    const probe = probeQuery(
      plan.parts,
      plan.items,
      index,
      keys.map((k) => k.values),
    )
    const params = { ...plan.params, ...probe.params }
    await run(sub, o, probe.sql, params, preservedColumns, slicer, (rows) => {
      for (const row of rows) {
        const p = rowIdentity(prefixOf, row, false).ident
        prefixes.set(p.toString('latin1'), p)
      }
    })
  }
  // The keys (at most evalKeysMax of them), then the prefixes in chunks of that size; each
  // unit is a self-contained restriction: its result replaces exactly the rows in its scope.
  const units: { restriction: Restriction; scope: Scope }[] = []
  if (itemKeys.length > 0) {
    units.push({
      restriction: { keysByItem, prefixes: [] },
      scope: { kind: 'keys', itemKeys, prefixes: [] },
    })
  }
  const allPrefixes = [...prefixes.values()]
  for (let at = 0; at < allPrefixes.length; at += o.evalKeysMax) {
    const chunk = allPrefixes.slice(at, at + o.evalKeysMax)
    units.push({
      restriction: {
        keysByItem: new Map(),
        prefixes: chunk.map((p) => prefixValues(p, preserved)),
      },
      scope: { kind: 'keys', itemKeys: [], prefixes: chunk },
    })
  }
  const toStaged = stager(plan)
  for (const unit of units) {
    const query = restrictedQuery(plan.parts, plan.items, unit.restriction)
    const ev = o.store.beginEval()
    let seq = 0
    try {
      await run(
        sub,
        o,
        query.sql,
        { ...plan.params, ...query.params },
        expectedColumns(plan),
        slicer,
        (rows) => {
          o.store.stage(ev, seq, rows.map(toStaged), 'merge')
          seq += rows.length
        },
      )
      const diff: DiffOptions = {
        num: sub.num,
        ev,
        scope: unit.scope,
        itemCount: plan.items.length,
        log: true,
        historyMax: o.historyMax,
      }
      await applySliced(sub, o, diff, slicer, publish)
    } finally {
      o.store.endEval(ev)
    }
  }
}
