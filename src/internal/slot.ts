/**
 * @internal
 * Redis Cluster hash slots: the slot of a key (CRC16 of the key, or of its `{hash tag}`, modulo 16384),
 * and a short hash tag for each slot, so a companion key (a lock) can be put in any key's slot whatever
 * characters that key holds.
 */
import calculateSlot from "cluster-key-slot"

/** @internal */
export const slotOf = (key: string): number => calculateSlot(key)

let tags: Array<string> | undefined

/** @internal A short string whose slot is `slot` (the table is built once, on first use). */
export const tagForSlot = (slot: number): string => {
  if (tags === undefined) {
    const table = new Array<string>(16384)
    let filled = 0
    for (let i = 0; filled < 16384; i++) {
      const candidate = i.toString(36)
      const s = calculateSlot(candidate)
      if (table[s] === undefined) {
        table[s] = candidate
        filled++
      }
    }
    tags = table
  }
  return tags[slot]!
}
