/**
 * The agent's Prometheus metrics, in a Registry of its own (several agents can run in one
 * test process). Names follow `patina_<subsystem>_<what>_<unit>`.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

export interface AgentMetrics {
  readonly registry: Registry
  readonly httpRequests: Counter<'route' | 'method' | 'status'>
  readonly httpDuration: Histogram<'route' | 'method'>
  readonly transactions: Counter<'outcome'>
  readonly inflightTransactions: Gauge
  readonly inflightTransactionsMax: Gauge
  readonly rejected: Counter<'reason'>
}

export function createAgentMetrics(): AgentMetrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'patina_' })
  return {
    registry,
    httpRequests: new Counter({
      name: 'patina_http_requests_total',
      help: 'HTTP requests answered, by route, method and status',
      labelNames: ['route', 'method', 'status'] as const,
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: 'patina_http_request_duration_seconds',
      help: 'Time to answer an HTTP request (to the last byte for streams)',
      labelNames: ['route', 'method'] as const,
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers: [registry],
    }),
    transactions: new Counter({
      name: 'patina_transactions_total',
      help: 'Write transactions: committed (got a version), noop (changed nothing), failed',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    inflightTransactions: new Gauge({
      name: 'patina_api_inflight_transactions',
      help: 'Transaction requests accepted and not yet answered',
      registers: [registry],
    }),
    inflightTransactionsMax: new Gauge({
      name: 'patina_api_inflight_transactions_max',
      help: 'Cap on in-flight transaction requests ([api] max_inflight_transactions)',
      registers: [registry],
    }),
    rejected: new Counter({
      name: 'patina_api_rejected_total',
      help: 'Requests refused because a cap was reached, by cap',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
  }
}
