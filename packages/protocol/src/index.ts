export const PROTOCOL_VERSION = 1
export * from './api.ts'
