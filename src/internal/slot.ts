/**
 * @internal
 * The Redis Cluster hash slot of a key (CRC16 of the key, or of its `{hash tag}`, modulo 16384).
 */
import calculateSlot from "cluster-key-slot"

/** @internal */
export const slotOf = (key: string): number => calculateSlot(key)
