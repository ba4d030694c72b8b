/**
 * The actor id: the 16-byte name of one replica (cr-sqlite and Corrosion call it the site id),
 * created at random when a database is first opened. In memory and on the wire it is bytes; in
 * the API, logs and metrics it is 32 lowercase hex digits.
 */

/** Bytes of an actor id. */
export const ACTOR_ID_BYTES = 16

const ACTOR_ID_HEX_PATTERN = /^[0-9a-f]{32}$/

/** The 32 lowercase hex digits of an actor id. */
export function actorIdHex(actorId: Uint8Array): string {
  return Buffer.from(actorId).toString('hex')
}

/** Whether `id` is a well-formed actor id in hex: 32 lowercase hex digits. */
export function isActorIdHex(id: string): boolean {
  return ACTOR_ID_HEX_PATTERN.test(id)
}
