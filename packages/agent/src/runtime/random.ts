/**
 * xoshiro128** (Blackman and Vigna, 2018), a small, fast PRNG with 128 bits of state, seeded
 * through splitmix32. The same seed gives the same sequence on every machine and Node version:
 * only 32-bit integer operations (`Math.imul`, shifts) are used.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'

export interface Random {
  /** A float in [0, 1). */
  float(): number
  /** An integer in [0, n) for an integer n >= 1. */
  int(n: number): number
}

const TWO_POW_32 = 2 ** 32

/** splitmix32: spreads one 32-bit seed word into well-mixed state words. */
function splitmix32(state: number): [next: number, output: number] {
  const next = (state + 0x9e3779b9) | 0
  let z = next
  z = Math.imul(z ^ (z >>> 16), 0x21f0aaad)
  z = Math.imul(z ^ (z >>> 15), 0x735a2d97)
  return [next, (z ^ (z >>> 15)) >>> 0]
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0
}

export class SeededRandom implements Random {
  private s0: number
  private s1: number
  private s2: number
  private s3: number

  /** A generator seeded with an integer in [0, 2^53). Equal seeds give equal sequences. */
  constructor(seed: number) {
    assert.ok(Number.isSafeInteger(seed) && seed >= 0, `seed must be a safe integer >= 0: ${seed}`)
    let state = (seed % TWO_POW_32) ^ Math.floor(seed / TWO_POW_32)
    const words: number[] = []
    for (let i = 0; i < 4; i++) {
      const [next, out] = splitmix32(state)
      state = next
      words.push(out)
    }
    ;[this.s0, this.s1, this.s2, this.s3] = words as [number, number, number, number]
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1
  }

  /** A generator with the given 128-bit state (not all zero). */
  static fromWords(a: number, b: number, c: number, d: number): SeededRandom {
    const r = new SeededRandom(0)
    r.s0 = a >>> 0
    r.s1 = b >>> 0
    r.s2 = c >>> 0
    r.s3 = d >>> 0
    if ((r.s0 | r.s1 | r.s2 | r.s3) === 0) r.s0 = 1
    return r
  }

  /** The next 32-bit unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0
    const t = (this.s1 << 9) >>> 0
    this.s2 = (this.s2 ^ this.s0) >>> 0
    this.s3 = (this.s3 ^ this.s1) >>> 0
    this.s1 = (this.s1 ^ this.s2) >>> 0
    this.s0 = (this.s0 ^ this.s3) >>> 0
    this.s2 = (this.s2 ^ t) >>> 0
    this.s3 = rotl(this.s3, 11)
    return result
  }

  float(): number {
    return this.nextU32() / TWO_POW_32
  }

  int(n: number): number {
    assert.ok(Number.isInteger(n) && n >= 1 && n <= TWO_POW_32, `int(n) needs 1 <= n <= 2^32: ${n}`)
    return Math.floor(this.float() * n)
  }

  /** An independent generator derived from this one (advances this one by four outputs). */
  fork(): SeededRandom {
    return SeededRandom.fromWords(this.nextU32(), this.nextU32(), this.nextU32(), this.nextU32())
  }
}

/** Fisher-Yates shuffle in place, driven by `random`. */
export function shuffle<T>(items: T[], random: Random): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = random.int(i + 1)
    const a = items[i] as T
    items[i] = items[j] as T
    items[j] = a
  }
  return items
}

/** A PRNG seeded from the operating system's entropy: for real agents (not reproducible). */
export function systemRandom(): SeededRandom {
  const seed = randomBytes(16)
  return SeededRandom.fromWords(
    seed.readUInt32LE(0),
    seed.readUInt32LE(4),
    seed.readUInt32LE(8),
    seed.readUInt32LE(12),
  )
}
