/** More seeds of convergence.test.ts, in their own file so the two run in parallel. */
import { seeds } from '../sim/seeds.ts'
import { convergenceSuite } from './scenario.ts'

convergenceSuite(
  'replication - convergence under loss, partition and crashes (seeds 10001-)',
  seeds(10_001, 70, 1000),
)
