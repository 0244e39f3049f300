import v8 from 'node:v8'

/** Bytes of V8's heap used by compiled code (its code spaces), a part of `heapUsed`. */
export const codeHeapUsed = (): number =>
  v8
    .getHeapSpaceStatistics()
    .filter((space) => space.space_name.startsWith('code'))
    .reduce((sum, space) => sum + space.space_used_size, 0)
