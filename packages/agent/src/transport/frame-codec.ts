import { TransportError } from './errors.ts'

/**
 * Wire format of a stream: a sequence of frames, each
 *
 *     [version: u8][length: u32 big-endian][payload: length bytes]
 *
 * The version byte lets a later build change the framing (or negotiate) without guessing;
 * a receiver closes the connection on a version it does not know.
 */
export const FRAME_VERSION = 1
export const FRAME_HEADER_BYTES = 5
/** The largest length the header can carry. */
export const FRAME_LENGTH_FIELD_MAX = 0xff_ff_ff_ff

export function encodeFrameHeader(length: number, version: number = FRAME_VERSION): Buffer {
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES)
  header.writeUInt8(version, 0)
  header.writeUInt32BE(length, 1)
  return header
}

/**
 * Incremental decoder: feed it chunks as they arrive, it calls `onFrame` for each complete
 * frame, in order. It checks the version as soon as the first byte of a header arrives and the
 * length before allocating, and throws TransportError BAD_VERSION or FRAME_TOO_LARGE; after a
 * throw the decoder is unusable (the connection is closed anyway).
 *
 * A frame that lies inside one chunk is passed as a view of that chunk (no copy); a frame that
 * spans chunks is copied once into its own buffer.
 */
export class FrameDecoder {
  private readonly frameBytesMax: number
  private readonly header = Buffer.alloc(FRAME_HEADER_BYTES)
  private headerFilled = 0
  private payload: Buffer | undefined
  private payloadFilled = 0

  constructor(frameBytesMax: number) {
    this.frameBytesMax = frameBytesMax
  }

  /** True when bytes of an unfinished frame are held: an end of stream now is a truncation. */
  get midFrame(): boolean {
    return this.headerFilled > 0 || this.payload !== undefined
  }

  push(chunk: Uint8Array, onFrame: (frame: Uint8Array) => void): void {
    let offset = 0
    while (offset < chunk.length) {
      if (this.payload !== undefined) {
        const take = Math.min(this.payload.length - this.payloadFilled, chunk.length - offset)
        this.payload.set(chunk.subarray(offset, offset + take), this.payloadFilled)
        this.payloadFilled += take
        offset += take
        if (this.payloadFilled === this.payload.length) {
          const frame = this.payload
          this.payload = undefined
          onFrame(frame)
        }
        continue
      }
      const take = Math.min(FRAME_HEADER_BYTES - this.headerFilled, chunk.length - offset)
      this.header.set(chunk.subarray(offset, offset + take), this.headerFilled)
      this.headerFilled += take
      offset += take
      const version = this.header.readUInt8(0)
      if (version !== FRAME_VERSION) {
        throw new TransportError(
          'BAD_VERSION',
          `frame version ${version}, expected ${FRAME_VERSION}`,
        )
      }
      if (this.headerFilled < FRAME_HEADER_BYTES) break
      this.headerFilled = 0
      const length = this.header.readUInt32BE(1)
      if (length > this.frameBytesMax) {
        throw new TransportError(
          'FRAME_TOO_LARGE',
          `frame of ${length} bytes, limit ${this.frameBytesMax}`,
        )
      }
      if (chunk.length - offset >= length) {
        onFrame(chunk.subarray(offset, offset + length))
        offset += length
      } else {
        this.payload = Buffer.allocUnsafe(length)
        this.payloadFilled = 0
      }
    }
  }
}
