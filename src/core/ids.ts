import { randomBytes } from 'node:crypto';

/**
 * UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then random bits. Ids made by one process are
 * strictly increasing: within a millisecond the 12-bit `rand_a` field is a counter, and when
 * it overflows (or the clock steps back) the timestamp is advanced by one, so keyset
 * pagination on `id` follows creation order on a single node.
 */
let lastMs = 0;
let seq = 0;

/** Random bytes drawn from a pool refilled 4 KiB at a time: one call into OpenSSL per 240 ids, not two per id. */
const POOL_SIZE = 4096;
let pool = Buffer.alloc(0);
let offset = POOL_SIZE;
function random(n: number): Buffer {
  if (offset + n > pool.length) {
    pool = randomBytes(POOL_SIZE);
    offset = 0;
  }
  const out = Buffer.from(pool.subarray(offset, offset + n));
  offset += n;
  return out;
}

export function uuidv7(now: number = Date.now()): string {
  let ms = now;
  if (ms > lastMs) {
    lastMs = ms;
    seq = random(2).readUInt16BE(0) & 0x7ff; // leave head-room for the counter
  } else {
    ms = lastMs;
    seq++;
    if (seq > 0xfff) {
      lastMs++;
      ms = lastMs;
      seq = 0;
    }
  }
  const bytes = random(16);
  bytes.writeUIntBE(ms, 0, 6);
  bytes[6] = 0x70 | (seq >> 8);
  bytes[7] = seq & 0xff;
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** True for a canonical lower-case UUID string (any version). */
export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID_RE.test(value);
}
