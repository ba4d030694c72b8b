/**
 * Convergence under faults, on the simulator with the real replication code: 20 nodes, random
 * writes on every node (inserts, updates, deletes, concurrent writes to the same rows, one large
 * chunked transaction), 20% loss, duplication, reordering, a partition that heals, crash-restart
 * of random nodes; then quiescence: every replica holds identical rows and clocks, and no queue
 * ever exceeded its cap. Seeds are split over two files so they run on both cores.
 */
import { seeds } from '../sim/seeds.ts'
import { convergenceSuite, REGRESSION_SEEDS } from './scenario.ts'

convergenceSuite('replication - convergence under loss, partition and crashes (seeds 1-)', [
  ...REGRESSION_SEEDS,
  ...seeds(1, 70, 1000),
])
