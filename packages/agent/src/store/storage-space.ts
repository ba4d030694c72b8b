/**
 * Free space on the filesystem of the database, and a small reserve file that lets the agent
 * start on a full disk.
 *
 * SQLite cannot even read a WAL database on a full disk after a clean stop: the first
 * connection recreates the `-shm` index (32 KiB), and on a full filesystem that fails with
 * "disk I/O error". So the agent keeps `patina.reserve` (RESERVE_BYTES of zeros) next to the
 * database while there is room, and releases it at start when the disk is full: the open then
 * has the few pages it needs, reads are served, and writes fail with SQLITE_FULL (answered
 * 507 STORAGE_FULL) once the released bytes are used. Nothing has to be restarted when space is
 * freed: SQLite retries the allocation on every write. The reserve is created again at the next
 * start that finds room for it.
 */
import { closeSync, existsSync, openSync, statfsSync, unlinkSync, writeSync } from 'node:fs'
import { join } from 'node:path'

/** Size of the reserve file: the -shm indexes of both databases and a few WAL pages. */
export const RESERVE_BYTES = 128 * 1024
/** Below this many free bytes the storage counts as full (health check `storage_full`). */
export const STORAGE_FULL_BELOW_BYTES = 1024 * 1024
export const RESERVE_FILE = 'patina.reserve'

/** Free bytes (for an unprivileged process) on the filesystem holding `dir`. */
export function freeBytes(dir: string): number {
  const s = statfsSync(dir)
  return s.bavail * s.bsize
}

/** Whether an error means the disk (or SQLite's page limit) is full. */
export function isStorageFull(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return (
    typeof code === 'string' &&
    (code.startsWith('SQLITE_FULL') || code === 'SQLITE_IOERR_SHMSIZE' || code === 'ENOSPC')
  )
}

export interface StorageState {
  readonly full: boolean
  readonly freeBytes: number
  /** Why the storage counts as full, in words (empty when it does not). */
  readonly reason: string
}

/** The storage state of the filesystem holding `dir`. */
export function storageState(dir: string): StorageState {
  const free = freeBytes(dir)
  const full = free < STORAGE_FULL_BELOW_BYTES
  return {
    full,
    freeBytes: free,
    reason: full
      ? `${free} bytes free on the filesystem of ${dir} (less than ${STORAGE_FULL_BELOW_BYTES}): ` +
        'writes fail with 507 STORAGE_FULL until space is freed'
      : '',
  }
}

/**
 * At start: releases the reserve in `dir` when the disk is full (returns the bytes freed, 0 when
 * there was nothing to release), else creates it when there is room for it twice over.
 */
export function prepareReserve(dir: string): { released: number; created: boolean } {
  const path = join(dir, RESERVE_FILE)
  const free = freeBytes(dir)
  if (free < STORAGE_FULL_BELOW_BYTES) {
    if (!existsSync(path)) return { released: 0, created: false }
    unlinkSync(path)
    return { released: RESERVE_BYTES, created: false }
  }
  if (existsSync(path) || free < 2 * RESERVE_BYTES + STORAGE_FULL_BELOW_BYTES) {
    return { released: 0, created: false }
  }
  const fd = openSync(path, 'w')
  try {
    // Written, not sparse: the blocks must really be allocated to be worth releasing.
    writeSync(fd, Buffer.alloc(RESERVE_BYTES))
  } catch (err) {
    closeSync(fd)
    unlinkSync(path)
    if (isStorageFull(err)) return { released: 0, created: false }
    throw err
  }
  closeSync(fd)
  return { released: 0, created: true }
}
