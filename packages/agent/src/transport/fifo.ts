/**
 * Taken slots at the front are dropped (the array is copied) once there are at least this many
 * and they are half of it: shifting stays O(1) amortised without an unbounded dead prefix.
 */
const FIFO_COMPACT_MIN = 1024

/**
 * A first-in first-out queue with O(1) push and shift (Array#shift copies on large arrays).
 * Unbounded by itself: every user puts its own cap in front of it.
 */
export class Fifo<T> {
  private items: (T | undefined)[] = []
  private head = 0

  get length(): number {
    return this.items.length - this.head
  }

  push(item: T): void {
    this.items.push(item)
  }

  peek(): T | undefined {
    return this.items[this.head]
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined
    const item = this.items[this.head]
    this.items[this.head] = undefined
    this.head += 1
    if (this.head === this.items.length) {
      this.items = []
      this.head = 0
    } else if (this.head >= FIFO_COMPACT_MIN && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return item
  }

  /** Removes one item (by identity); O(n), for rare cancellations. */
  remove(item: T): boolean {
    const index = this.items.indexOf(item, this.head)
    if (index < 0) return false
    this.items.splice(index, 1)
    return true
  }

  /** Empties the queue and returns what it held, oldest first. */
  drain(): T[] {
    const rest = this.items.slice(this.head) as T[]
    this.items = []
    this.head = 0
    return rest
  }
}
