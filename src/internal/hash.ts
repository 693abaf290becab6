/**
 * SHA-256 for the places that must hash synchronously (key codecs, fingerprints, redacted log keys),
 * on every runtime: `@noble/hashes`' pure implementation, not `node:crypto` (Web Crypto's `digest`
 * is asynchronous). The digests are SHA-256's, so keys and fingerprints written by earlier versions
 * stay the same.
 */
import { sha256 } from "@noble/hashes/sha2"
import * as Encoding from "effect/Encoding"

const encoder = new TextEncoder()

/** The SHA-256 digest of `text`'s UTF-8 bytes, as lowercase hex. */
export const sha256Hex = (text: string): string => Encoding.encodeHex(sha256(encoder.encode(text)))

/** The SHA-256 digest of `text`'s UTF-8 bytes, as unpadded base64url. */
export const sha256Base64Url = (text: string): string => Encoding.encodeBase64Url(sha256(encoder.encode(text)))
