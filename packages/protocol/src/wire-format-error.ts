/** A line or body that is not what the wire format defines. */
export class WireFormatError extends Error {
  static {
    this.prototype.name = 'WireFormatError'
  }
  readonly code = 'WIRE_FORMAT'
}
