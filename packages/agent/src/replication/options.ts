/**
 * Every knob of replication (broadcast, apply, sync). The options and their defaults live with
 * the agent's other limits in config/defaults.ts (the config reads them, and config/ depends on
 * no subsystem); they are re-exported here for the replication code and the simulator.
 */
export { DEFAULT_REPLICATION, type ReplicationOptions } from '../config/defaults.ts'
