export type {} from '@patina/protocol'
