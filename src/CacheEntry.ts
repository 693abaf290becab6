/**
 * The stored envelope: every store keeps the same header in front of every value.
 *
 * The header carries a format version, the fingerprint of the schema and serializer that wrote the
 * value, the write's `version` (assigned by the store: Redis's own clock inside the write script, the
 * Effect `Clock` in memory), `freshUntil` (the logical expiry: the end of the time to live),
 * `staleUntil` (the end of the grace period, which is also the store's physical time to live), the
 * entry's tags, and whether it caches a failure. Reads classify an entry as fresh, stale or expired
 * from the header and the Clock, so expiry is the same on every store and `TestClock` drives it.
 *
 * Remote stores keep the envelope as bytes ({@link encode}, {@link decode}: this module is the only
 * place that knows the byte layout). An in-process store keeps the decoded value beside the same
 * header ({@link Live}), so a hit costs no deserialization.
 *
 * Layout (big-endian): `"ck"`, format version `2`, a flags byte (failure, text body, and compressed
 * body: set only on the wire of a store that deflates bodies, which inflates them again on read), the 12-character
 * fingerprint, `version`, `freshUntil` and `staleUntil` as float64 (epoch milliseconds; `version` on
 * a microsecond scale; `Infinity` means no expiry), the tag count (uint16), each tag as a uint16 byte
 * length and UTF-8 bytes, then the body. Bytes that do not start with this header (a value written by
 * effect-cachekit 0.1, or by another program) are not an envelope: the cache reads them as a miss and
 * replaces them.
 *
 * @since 0.2.0
 */

/**
 * What every stored entry says about itself.
 *
 * @example
 * ```ts
 * import type { CacheEntry } from "effect-cachekit"
 *
 * const header: CacheEntry.Header = {
 *   fingerprint: "0123456789ab",
 *   version: 0,
 *   freshUntil: Date.now() + 60_000,
 *   staleUntil: Date.now() + 60_000,
 *   tags: [],
 *   isFailure: false
 * }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface Header {
  /** The fingerprint of the value schema and serializer that wrote the entry (12 hex characters). */
  readonly fingerprint: string
  /**
   * The write's version, assigned by the store (0 until then). Versions of one key grow with every
   * write; they are on a microsecond scale, so versions from different stores stay comparable.
   */
  readonly version: number
  /** Epoch milliseconds after which the entry is stale; `Infinity` when it never expires. */
  readonly freshUntil: number
  /** Epoch milliseconds after which the entry is gone (the store's physical time to live); `>= freshUntil`. */
  readonly staleUntil: number
  readonly tags: ReadonlyArray<string>
  /** Whether the entry caches a producer's failure rather than a value. */
  readonly isFailure: boolean
}

/**
 * How an entry stands at a given time: `"fresh"` before `freshUntil`, `"stale"` until `staleUntil`
 * (servable only as a fallback), `"expired"` after.
 *
 * @example
 * ```ts
 * import { CacheEntry } from "effect-cachekit"
 *
 * const status: CacheEntry.Status = CacheEntry.status({ freshUntil: 1_000, staleUntil: 5_000 }, 2_000) // "stale"
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export type Status = "fresh" | "stale" | "expired"

/**
 * Classifies an entry at `now` (epoch milliseconds, from the Clock).
 *
 * @example
 * ```ts
 * import { CacheEntry } from "effect-cachekit"
 *
 * CacheEntry.status({ freshUntil: 1_000, staleUntil: 1_000 }, 999)   // "fresh"
 * CacheEntry.status({ freshUntil: 1_000, staleUntil: 1_000 }, 1_000) // "expired"
 * ```
 *
 * @since 0.2.0
 * @category accessors
 */
export const status = (header: Pick<Header, "freshUntil" | "staleUntil">, now: number): Status =>
  now < header.freshUntil ? "fresh" : now < header.staleUntil ? "stale" : "expired"

const noTags: ReadonlyArray<string> = Object.freeze([])

/**
 * The part of a {@link Live} entry's header that many entries share: one object per fingerprint and
 * grace period when the entry has no tags and caches no failure, so an entry costs one object.
 */
class Shared {
  constructor(
    readonly fingerprint: string,
    /** `staleUntil - freshUntil`. */
    readonly graceMillis: number,
    readonly tags: ReadonlyArray<string>,
    readonly isFailure: boolean
  ) {}
}

const sharedByFingerprint = new Map<string, Map<number, Shared>>()

/** How many grace periods per fingerprint share a header object (a grace computed per value may take many). */
const maxSharedGraces = 64

const sharedOf = (fingerprint: string, graceMillis: number, tags: ReadonlyArray<string>, isFailure: boolean): Shared => {
  if (tags.length > 0 || isFailure) return new Shared(fingerprint, graceMillis, tags, isFailure)
  let byGrace = sharedByFingerprint.get(fingerprint)
  if (byGrace === undefined) sharedByFingerprint.set(fingerprint, byGrace = new Map())
  let shared = byGrace.get(graceMillis)
  if (shared === undefined) {
    shared = new Shared(fingerprint, graceMillis, noTags, false)
    if (byGrace.size < maxSharedGraces) byGrace.set(graceMillis, shared)
  }
  return shared
}

/**
 * An entry as an in-process store keeps it: the decoded value beside its header. Only stores whose
 * capabilities include `liveValues` receive these; every other store receives {@link encode}d bytes.
 * The value is shared with every reader: treat it as immutable.
 *
 * @example
 * ```ts
 * import { CacheEntry } from "effect-cachekit"
 *
 * const entry = CacheEntry.Live.make({ id: 1 }, {
 *   fingerprint: "0123456789ab",
 *   freshUntil: Date.now() + 60_000,
 *   staleUntil: Date.now() + 60_000,
 *   size: 8
 * })
 * entry.isFailure // false
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export class Live implements Header {
  /**
   * Builds a live entry; entries without tags that cache no failure share their header's constant
   * part.
   *
   * @since 0.2.0
   */
  static make(
    value: unknown,
    header: {
      readonly fingerprint: string
      readonly freshUntil: number
      readonly staleUntil: number
      readonly tags?: ReadonlyArray<string> | undefined
      readonly isFailure?: boolean | undefined
      /** The length of the value's serialized form (what a byte budget counts). */
      readonly size: number
      readonly version?: number | undefined
    }
  ): Live {
    const grace = header.freshUntil === Infinity ? 0 : Math.max(0, header.staleUntil - header.freshUntil)
    return new Live(
      value,
      sharedOf(header.fingerprint, grace, header.tags ?? noTags, header.isFailure ?? false),
      header.freshUntil,
      header.size,
      header.version ?? 0
    )
  }

  private constructor(
    /** The decoded value. */
    readonly value: unknown,
    private readonly shared: Shared,
    readonly freshUntil: number,
    /** The length of the value's serialized form, in bytes or UTF-16 code units. */
    readonly size: number,
    /** Assigned by the store that keeps the entry. */
    public version: number
  ) {}

  /** @since 0.2.0 */
  get fingerprint(): string {
    return this.shared.fingerprint
  }
  /** @since 0.2.0 */
  get staleUntil(): number {
    return this.freshUntil + this.shared.graceMillis
  }
  /** @since 0.2.0 */
  get tags(): ReadonlyArray<string> {
    return this.shared.tags
  }
  /** @since 0.2.0 */
  get isFailure(): boolean {
    return this.shared.isFailure
  }
}

/**
 * What a store keeps under one key: the envelope as bytes, or, in an in-process store that accepts
 * them, a {@link Live} entry.
 *
 * @example
 * ```ts
 * import { CacheEntry } from "effect-cachekit"
 *
 * const describe = (stored: CacheEntry.Stored) => stored instanceof CacheEntry.Live ? "live" : `${stored.length} bytes`
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export type Stored = Uint8Array | Live

/**
 * A decoded envelope: its header and a view of its body.
 *
 * @example
 * ```ts
 * import { CacheEntry } from "effect-cachekit"
 *
 * const bytes = CacheEntry.encode({ fingerprint: "0123456789ab", version: 0, freshUntil: Infinity, staleUntil: Infinity, tags: [], isFailure: false }, "{}")
 * const decoded: CacheEntry.Decoded | undefined = CacheEntry.decode(bytes)
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface Decoded extends Header {
  /** The serialized value (a view into the decoded bytes). */
  readonly body: Uint8Array
  /** Whether the body was written as text (UTF-8). */
  readonly isText: boolean
}

const magic0 = 0x63 // "c"
const magic1 = 0x6b // "k"
const formatVersion = 2
const flagFailure = 1
/** The body is deflated (raw DEFLATE): only on the wire to a store, never seen by `decode`. */
const flagCompressed = 4
const flagText = 2
const fingerprintOffset = 4
const fingerprintLength = 12
/** @internal Where the version sits, for stores that assign it in place (the Redis write script). */
export const versionOffset = 16
/** @internal Where `freshUntil` sits (and `staleUntil` 8 bytes after it), for stores that rewrite it in place. */
export const freshOffset = 24
const staleOffset = 32
const tagsOffset = 40
const fixedLength = 42

/** @internal The first bytes of every envelope, as a binary string (for the Redis write script). */
export const magic = String.fromCharCode(magic0, magic1, formatVersion)

const encoder = new TextEncoder()
/** Replaces invalid UTF-8 (as a tag read from foreign bytes may hold) and keeps a leading U+FEFF. */
const utf8 = new TextDecoder("utf-8", { ignoreBOM: true })

// Big-endian float64s read and written through one scratch double, so the read path allocates nothing
// (a DataView per call would).
const scratch = new Float64Array(1)
const scratchBytes = new Uint8Array(scratch.buffer)
const isLittleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

const readDouble = (bytes: Uint8Array, at: number): number => {
  const b = scratchBytes
  if (isLittleEndian) {
    b[0] = bytes[at + 7]!, b[1] = bytes[at + 6]!, b[2] = bytes[at + 5]!, b[3] = bytes[at + 4]!
    b[4] = bytes[at + 3]!, b[5] = bytes[at + 2]!, b[6] = bytes[at + 1]!, b[7] = bytes[at]!
  } else {
    for (let i = 0; i < 8; i++) b[i] = bytes[at + i]!
  }
  return scratch[0]!
}

const writeDouble = (bytes: Uint8Array, at: number, value: number): void => {
  scratch[0] = value
  const b = scratchBytes
  if (isLittleEndian) {
    bytes[at] = b[7]!, bytes[at + 1] = b[6]!, bytes[at + 2] = b[5]!, bytes[at + 3] = b[4]!
    bytes[at + 4] = b[3]!, bytes[at + 5] = b[2]!, bytes[at + 6] = b[1]!, bytes[at + 7] = b[0]!
  } else {
    for (let i = 0; i < 8; i++) bytes[at + i] = b[i]!
  }
}

const readUint16 = (bytes: Uint8Array, at: number): number => (bytes[at]! << 8) | bytes[at + 1]!

const writeUint16 = (bytes: Uint8Array, at: number, value: number): void => {
  bytes[at] = value >>> 8
  bytes[at + 1] = value & 0xff
}

// Small envelopes are cut from a shared 8 KB slab, as Node's `Buffer.allocUnsafe` does from its pool:
// an ArrayBuffer per envelope costs more than the encoding. Each envelope is a view of its own bytes.
const slabSize = 8 * 1024
let slab = new Uint8Array(slabSize)
let slabOffset = 0

const allocate = (size: number): Uint8Array => {
  if (size > slabSize >>> 2) return new Uint8Array(size)
  if (slabOffset + size > slabSize) {
    slab = new Uint8Array(slabSize)
    slabOffset = 0
  }
  const out = slab.subarray(slabOffset, slabOffset + size)
  // The next view starts 8-aligned, as Node aligns its pool.
  slabOffset = (slabOffset + size + 7) & ~7
  return out
}

/** `text` as UTF-8, in a scratch view cut from the slab (it is copied into the envelope at once). */
const utf8Of = (text: string): Uint8Array => {
  if (text.length * 3 > slabSize >>> 2) return encoder.encode(text)
  const room = allocate(text.length * 3)
  return room.subarray(0, encoder.encodeInto(text, room).written)
}

/**
 * `text` as UTF-8 after `start` bytes of room: one exact allocation when the text is ASCII (its
 * length is then its byte length), else the encoded text copied once.
 */
const withRoomFor = (start: number, text: string): Uint8Array => {
  const out = allocate(start + text.length)
  const { read, written } = encoder.encodeInto(text, out.subarray(start))
  if (read === text.length && written === text.length) return out
  const bytes = encoder.encode(text)
  const grown = allocate(start + bytes.length)
  grown.set(bytes, start)
  return grown
}

const ascii = /^[\x00-\x7f]*$/

const fingerprintPattern = /^[\x21-\x7e]{12}$/

/**
 * Writes a header and a body into one envelope. A text body is written as UTF-8.
 *
 * @example
 * ```ts
 * import { CacheEntry } from "effect-cachekit"
 *
 * const bytes = CacheEntry.encode(
 *   { fingerprint: "0123456789ab", version: 0, freshUntil: Date.now() + 60_000, staleUntil: Date.now() + 60_000, tags: ["org:acme"], isFailure: false },
 *   JSON.stringify({ id: 1 })
 * )
 * ```
 *
 * @since 0.2.0
 * @category encoding
 */
export const encode = (header: Header, body: string | Uint8Array): Uint8Array => {
  if (!fingerprintPattern.test(header.fingerprint)) {
    throw new TypeError(`effect-cachekit: a fingerprint is 12 printable ASCII characters, got ${JSON.stringify(header.fingerprint)}`)
  }
  let tagsLength = 0
  // An ASCII tag is written as it is; others are encoded first.
  const tags = header.tags.map((tag) => {
    const bytes = ascii.test(tag) ? tag : utf8Of(tag)
    if (bytes.length > 0xffff) throw new RangeError("effect-cachekit: a tag is at most 65,535 bytes")
    tagsLength += 2 + bytes.length
    return bytes
  })
  if (tags.length > 0xffff) throw new RangeError("effect-cachekit: an entry carries at most 65,535 tags")
  const isText = typeof body === "string"
  const start = fixedLength + tagsLength
  let out: Uint8Array
  if (isText) {
    out = withRoomFor(start, body)
  } else {
    out = allocate(start + body.length)
    out.set(body, start)
  }
  out[0] = magic0
  out[1] = magic1
  out[2] = formatVersion
  out[3] = (header.isFailure ? flagFailure : 0) | (isText ? flagText : 0)
  for (let i = 0; i < fingerprintLength; i++) out[fingerprintOffset + i] = header.fingerprint.charCodeAt(i)
  writeDouble(out, versionOffset, header.version)
  writeDouble(out, freshOffset, header.freshUntil)
  writeDouble(out, staleOffset, header.staleUntil)
  writeUint16(out, tagsOffset, tags.length)
  let at = fixedLength
  for (const tag of tags) {
    writeUint16(out, at, tag.length)
    if (typeof tag === "string") {
      for (let i = 0; i < tag.length; i++) out[at + 2 + i] = tag.charCodeAt(i)
    } else {
      out.set(tag, at + 2)
    }
    at += 2 + tag.length
  }
  return out
}

/**
 * Reads an envelope: its header and a view of its body, or `undefined` when the bytes are not an
 * envelope of this format (too short, another format version, a value written by effect-cachekit 0.1
 * or by another program, or a header that does not hold together).
 *
 * @example
 * ```ts
 * import { CacheEntry } from "effect-cachekit"
 *
 * CacheEntry.decode(new TextEncoder().encode("ck1:0123456789ab:{}")) // undefined: a 0.1 entry
 * ```
 *
 * @since 0.2.0
 * @category encoding
 */
export const decode = (bytes: Uint8Array): Decoded | undefined => {
  if (bytes.length < fixedLength || bytes[0] !== magic0 || bytes[1] !== magic1 || bytes[2] !== formatVersion) {
    return undefined
  }
  const flags = bytes[3]!
  if ((flags & ~(flagFailure | flagText)) !== 0) return undefined
  const freshUntil = readDouble(bytes, freshOffset)
  const staleUntil = readDouble(bytes, staleOffset)
  const version = readDouble(bytes, versionOffset)
  if (Number.isNaN(freshUntil) || Number.isNaN(staleUntil) || Number.isNaN(version) || staleUntil < freshUntil) {
    return undefined
  }
  const count = readUint16(bytes, tagsOffset)
  let at = fixedLength
  let tags = noTags
  if (count > 0) {
    const list: Array<string> = []
    for (let i = 0; i < count; i++) {
      if (at + 2 > bytes.length) return undefined
      const length = readUint16(bytes, at)
      if (at + 2 + length > bytes.length) return undefined
      list.push(utf8.decode(bytes.subarray(at + 2, at + 2 + length)))
      at += 2 + length
    }
    tags = list
  }
  const f = fingerprintOffset
  return {
    fingerprint: String.fromCharCode(
      bytes[f]!, bytes[f + 1]!, bytes[f + 2]!, bytes[f + 3]!, bytes[f + 4]!, bytes[f + 5]!,
      bytes[f + 6]!, bytes[f + 7]!, bytes[f + 8]!, bytes[f + 9]!, bytes[f + 10]!, bytes[f + 11]!
    ),
    version,
    freshUntil,
    staleUntil,
    tags,
    isFailure: (flags & flagFailure) !== 0,
    isText: (flags & flagText) !== 0,
    body: bytes.subarray(at)
  }
}

/**
 * @internal
 * The hot path of a read: where the body starts in an envelope written under `fingerprint` that
 * carries no tags, caches no failure, is not compressed and is fresh at `now` (and whose header holds
 * together as {@link decode} requires); `-1` for anything else, which `decode` then reads in full.
 * Allocates nothing.
 */
export const freshBodyAt = (bytes: Uint8Array, fingerprint: string, now: number): number => {
  if (
    bytes.length < fixedLength || bytes[0] !== magic0 || bytes[1] !== magic1 || bytes[2] !== formatVersion ||
    (bytes[3]! & ~flagText) !== 0 || bytes[tagsOffset] !== 0 || bytes[tagsOffset + 1] !== 0
  ) return -1
  for (let i = 0; i < fingerprintLength; i++) {
    if (bytes[fingerprintOffset + i] !== fingerprint.charCodeAt(i)) return -1
  }
  const freshUntil = readDouble(bytes, freshOffset)
  // `now < NaN` is false, so a NaN expiry is left to `decode` (which refuses it), as is a NaN version.
  if (!(now < freshUntil) || !(readDouble(bytes, staleOffset) >= freshUntil) || Number.isNaN(readDouble(bytes, versionOffset))) return -1
  return fixedLength
}

/**
 * @internal
 * Writes `version` into an envelope in place (a store that assigns versions and keeps bytes).
 */
export const stampVersion = (bytes: Uint8Array, version: number): void => {
  if (bytes.length >= fixedLength && bytes[0] === magic0 && bytes[1] === magic1 && bytes[2] === formatVersion) {
    writeDouble(bytes, versionOffset, version)
  }
}

/**
 * @internal
 * The version written in an envelope, or 0 for bytes that are not one.
 */
export const versionOf = (bytes: Uint8Array): number =>
  bytes.length >= fixedLength && bytes[0] === magic0 && bytes[1] === magic1 && bytes[2] === formatVersion
    ? readDouble(bytes, versionOffset)
    : 0

/**
 * The version a store gives a write at `nowMillis` (from its clock) after `previous`: the time on a
 * microsecond scale, and always above the previous version, so versions grow even when the clock
 * stands still (`TestClock`) or steps back.
 *
 * @example
 * ```ts
 * import { CacheEntry } from "effect-cachekit"
 *
 * CacheEntry.nextVersion(1_000, 0)         // 1_000_000
 * CacheEntry.nextVersion(1_000, 1_000_000) // 1_000_001
 * ```
 *
 * @since 0.2.0
 * @category encoding
 */
export const nextVersion = (nowMillis: number, previous: number): number => Math.max(Math.floor(nowMillis * 1000), previous + 1)

const envelopes = new WeakMap<Live, Uint8Array>()

/**
 * Attaches to a live entry the envelope of the same value, for a two-layer store (capability
 * `tiered`): it keeps the live entry in memory and sends the envelope to the shared tier. The
 * envelope is held beside the entry, not in it, so entries kept in memory cost nothing more.
 *
 * @example
 * ```ts
 * import { CacheEntry } from "effect-cachekit"
 *
 * const header = { fingerprint: "abcdefabcdef", version: 0, freshUntil: Infinity, staleUntil: Infinity, tags: [], isFailure: false }
 * const live = CacheEntry.withEnvelope(CacheEntry.Live.make("Ada", { ...header, size: 5 }), CacheEntry.encode(header, "\"Ada\""))
 * CacheEntry.envelopeOf(live) // the envelope bytes
 * ```
 *
 * @since 0.3.0
 * @category encoding
 */
export const withEnvelope = (live: Live, envelope: Uint8Array): Live => {
  envelopes.set(live, envelope)
  return live
}

/**
 * The envelope attached to a live entry by {@link withEnvelope}, if any.
 *
 * @example
 * ```ts
 * import { CacheEntry } from "effect-cachekit"
 *
 * declare const live: CacheEntry.Live
 * const bytes: Uint8Array | undefined = CacheEntry.envelopeOf(live)
 * ```
 *
 * @since 0.3.0
 * @category encoding
 */
export const envelopeOf = (live: Live): Uint8Array | undefined => envelopes.get(live)

/**
 * A live entry of a decoded envelope: the decoded `value` beside the envelope's header (its version,
 * expiry, tags), for a store that keeps in memory what it read from a shared tier.
 *
 * @example
 * ```ts
 * import { CacheEntry } from "effect-cachekit"
 *
 * declare const bytes: Uint8Array
 * const decoded = CacheEntry.decode(bytes)
 * const live = decoded === undefined ? undefined : CacheEntry.liveOf(decoded, "the decoded value")
 * ```
 *
 * @since 0.3.0
 * @category encoding
 */
export const liveOf = (decoded: Decoded, value: unknown): Live =>
  Live.make(value, {
    fingerprint: decoded.fingerprint,
    freshUntil: decoded.freshUntil,
    staleUntil: decoded.staleUntil,
    tags: decoded.tags,
    isFailure: decoded.isFailure,
    size: decoded.body.length,
    version: decoded.version
  })

const isHeaderOf = (bytes: Uint8Array): boolean =>
  bytes.length >= fixedLength && bytes[0] === magic0 && bytes[1] === magic1 && bytes[2] === formatVersion

/** Where an envelope's body starts (after its tags), or `undefined` when its tags do not fit. */
const bodyStart = (bytes: Uint8Array): number | undefined => {
  const count = readUint16(bytes, tagsOffset)
  let at = fixedLength
  for (let i = 0; i < count; i++) {
    if (at + 2 > bytes.length) return undefined
    at += 2 + readUint16(bytes, at)
    if (at > bytes.length) return undefined
  }
  return at
}

/**
 * @internal
 * Whether an envelope's body is compressed (see {@link withBody}).
 */
export const isCompressed = (bytes: Uint8Array): boolean => isHeaderOf(bytes) && (bytes[3]! & flagCompressed) !== 0

/**
 * @internal
 * The envelope with its body replaced by `f(body)` and flagged `compressed` or not: how a store that
 * compresses on the wire packs and unpacks bodies (the header, and the version a script stamps at its
 * fixed offset, are untouched). `undefined` for bytes that are not an envelope.
 */
export const withBody = (bytes: Uint8Array, compressed: boolean, f: (body: Uint8Array) => Uint8Array): Uint8Array | undefined => {
  if (!isHeaderOf(bytes)) return undefined
  const start = bodyStart(bytes)
  if (start === undefined) return undefined
  const body = f(bytes.subarray(start))
  const out = new Uint8Array(start + body.length)
  out.set(bytes.subarray(0, start))
  out[3] = compressed ? out[3]! | flagCompressed : out[3]! & ~flagCompressed
  out.set(body, start)
  return out
}

/**
 * @internal
 * A copy of an envelope with new `freshUntil`, `staleUntil` and `version` (what `expire` writes), or
 * `undefined` for bytes that are not an envelope.
 */
export const retimed = (bytes: Uint8Array, freshUntil: number, staleUntil: number, version: number): Uint8Array | undefined => {
  if (!isHeaderOf(bytes)) return undefined
  const out = new Uint8Array(bytes) // a copy (a Buffer's slice would share its memory)
  writeDouble(out, versionOffset, version)
  writeDouble(out, freshOffset, freshUntil)
  writeDouble(out, staleOffset, staleUntil)
  return out
}

/**
 * @internal
 * The `freshUntil` and `staleUntil` of an envelope, or `undefined` for bytes that are not one.
 */
export const timesOf = (bytes: Uint8Array): { readonly freshUntil: number; readonly staleUntil: number } | undefined => {
  if (!isHeaderOf(bytes)) return undefined
  return { freshUntil: readDouble(bytes, freshOffset), staleUntil: readDouble(bytes, staleOffset) }
}
