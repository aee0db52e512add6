/**
 * Configuration keys of realtime, notifications and push (read by config.ts with the others).
 */
import { bool, httpUrl, int, jsonObject, type KeySpec, nonEmpty, oneOf } from './config-parsers.js';

/** Realtime settings. */
export interface RealtimeConfig {
  /** How events reach the other nodes: `database` (PostgreSQL NOTIFY; in process on SQLite), `redis`, or `auto` (Redis when configured). */
  fanout: 'auto' | 'database' | 'redis';
  /** How long events stay in the log for resuming clients, seconds. */
  retentionS: number;
  /** Largest message a client may send, bytes (larger: close 1009). */
  maxFrameBytes: number;
  /** Bytes queued for one slow client before it is disconnected (close 4008). */
  sendBufferBytes: number;
  /** Ping interval; a peer that has not answered the previous ping is dropped, ms. */
  heartbeatMs: number;
  /** Subscriptions (records and channels) one connection may hold. */
  maxSubscriptions: number;
  /** Connections one user may hold on one node (anonymous: per IP). */
  maxConnectionsPerUser: number;
  /** How often a node looks at the log for events it was not told about, ms. */
  pollMs: number;
  /** How often a node re-announces its presence entries to the others, ms (entries expire after three missed rounds). */
  presenceSyncMs: number;
  /** Messages a client may publish to channels per second. */
  publishPerSecond: number;
  /** Messages of any kind a client may send per second (twice that in a burst); more closes it with 1008. */
  messagesPerSecond: number;
}

/** A push provider's credentials and endpoint. */
export interface PushConfig {
  /** FCM: the service account JSON (project_id, client_email, private_key, token_uri). */
  fcmServiceAccount: Record<string, unknown> | undefined;
  /** FCM HTTP v1 base URL. */
  fcmUrl: string;
  /** APNs: the .p8 signing key (PEM). */
  apnsKey: string | undefined;
  /** APNs key id. */
  apnsKeyId: string | undefined;
  /** APNs team id. */
  apnsTeamId: string | undefined;
  /** APNs topic (the app's bundle id). */
  apnsTopic: string | undefined;
  /** APNs base URL (https://api.push.apple.com, or the sandbox). */
  apnsUrl: string;
  /** Web Push VAPID public key (base64url). */
  vapidPublicKey: string | undefined;
  /** Web Push VAPID private key (base64url). */
  vapidPrivateKey: string | undefined;
  /** VAPID subject (`mailto:` or an https URL). */
  vapidSubject: string;
  /** Per-attempt timeout of a push, ms. */
  timeoutMs: number;
  /** Retries of a push job. */
  retries: number;
  /** First retry delay of a push job, ms (doubling with jitter). */
  retryBaseMs: number;
  /** Consecutive failures that open a provider's breaker. */
  breakerFailures: number;
  /** How long an open breaker fails fast before one trial call, ms. */
  breakerOpenMs: number;
  /** Days notifications stay in inboxes. */
  keepDays: number;
  /** Accept plain-http Web Push endpoints (development and tests only). */
  allowHttp: boolean;
}

const serviceAccount = (raw: string) => {
  const o = jsonObject(raw);
  return o && typeof o.project_id === 'string' && typeof o.client_email === 'string' && typeof o.private_key === 'string' ? o : undefined;
};

export const REALTIME_KEYS = {
  RAMPART_REALTIME_FANOUT: { expected: 'auto, database or redis', parse: oneOf('auto', 'database', 'redis'), default: 'auto' as const },
  RAMPART_REALTIME_RETENTION_S: { expected: 'seconds, 60 to 2592000', parse: int(60, 2_592_000), default: 86_400 },
  RAMPART_REALTIME_MAX_FRAME: { expected: 'bytes, 256 to 1048576', parse: int(256, 1_048_576), default: 16_384 },
  RAMPART_REALTIME_SEND_BUFFER: { expected: 'bytes, 16384 to 67108864', parse: int(16_384, 67_108_864), default: 1_048_576 },
  RAMPART_REALTIME_HEARTBEAT_MS: { expected: 'milliseconds, 100 to 600000', parse: int(100, 600_000), default: 30_000 },
  RAMPART_REALTIME_MAX_SUBSCRIPTIONS: { expected: '1 to 10000', parse: int(1, 10_000), default: 100 },
  RAMPART_REALTIME_MAX_CONNECTIONS_PER_USER: { expected: '1 to 100000', parse: int(1, 100_000), default: 20 },
  RAMPART_REALTIME_POLL_MS: { expected: 'milliseconds, 20 to 60000', parse: int(20, 60_000), default: 1000 },
  RAMPART_REALTIME_PRESENCE_SYNC_MS: { expected: 'milliseconds, 100 to 600000', parse: int(100, 600_000), default: 10_000 },
  RAMPART_REALTIME_PUBLISH_PER_S: { expected: '1 to 10000', parse: int(1, 10_000), default: 20 },
  RAMPART_REALTIME_MESSAGES_PER_S: { expected: '1 to 100000', parse: int(1, 100_000), default: 50 },
  RAMPART_FCM_SERVICE_ACCOUNT: {
    expected: 'a service account JSON with project_id, client_email and private_key',
    parse: serviceAccount,
    default: undefined as Record<string, unknown> | undefined,
    secret: true,
  },
  RAMPART_FCM_URL: { expected: 'an http(s) URL', parse: httpUrl, default: 'https://fcm.googleapis.com' },
  RAMPART_APNS_KEY: { expected: 'a PEM private key (.p8)', parse: nonEmpty, default: undefined as string | undefined, secret: true },
  RAMPART_APNS_KEY_ID: { expected: 'the key id', parse: nonEmpty, default: undefined as string | undefined },
  RAMPART_APNS_TEAM_ID: { expected: 'the team id', parse: nonEmpty, default: undefined as string | undefined },
  RAMPART_APNS_TOPIC: { expected: 'the bundle id', parse: nonEmpty, default: undefined as string | undefined },
  RAMPART_APNS_URL: { expected: 'an http(s) URL', parse: httpUrl, default: 'https://api.push.apple.com' },
  RAMPART_VAPID_PUBLIC_KEY: { expected: 'a base64url public key', parse: nonEmpty, default: undefined as string | undefined },
  RAMPART_VAPID_PRIVATE_KEY: {
    expected: 'a base64url private key',
    parse: nonEmpty,
    default: undefined as string | undefined,
    secret: true,
  },
  RAMPART_VAPID_SUBJECT: { expected: 'mailto: or https URL', parse: nonEmpty, default: 'mailto:admin@localhost' },
  RAMPART_PUSH_TIMEOUT_MS: { expected: 'milliseconds, 100 to 120000', parse: int(100, 120_000), default: 10_000 },
  RAMPART_PUSH_RETRIES: { expected: '0 to 30', parse: int(0, 30), default: 10 },
  RAMPART_PUSH_RETRY_BASE_MS: { expected: 'milliseconds, 10 to 3600000', parse: int(10, 3_600_000), default: 2000 },
  RAMPART_PUSH_BREAKER_FAILURES: { expected: '1 to 1000', parse: int(1, 1000), default: 5 },
  RAMPART_PUSH_BREAKER_OPEN_MS: { expected: 'milliseconds, 100 to 3600000', parse: int(100, 3_600_000), default: 30_000 },
  RAMPART_NOTIFICATIONS_KEEP_DAYS: { expected: 'days, 1 to 3650', parse: int(1, 3650), default: 90 },
  RAMPART_PUSH_ALLOW_HTTP: { expected: 'true or false', parse: bool, default: false },
} satisfies Record<string, KeySpec<unknown>>;

type V = { [K in keyof typeof REALTIME_KEYS]: (typeof REALTIME_KEYS)[K]['default'] };

export function realtimeSlice(v: V): RealtimeConfig {
  return {
    fanout: v.RAMPART_REALTIME_FANOUT,
    retentionS: v.RAMPART_REALTIME_RETENTION_S,
    maxFrameBytes: v.RAMPART_REALTIME_MAX_FRAME,
    sendBufferBytes: v.RAMPART_REALTIME_SEND_BUFFER,
    heartbeatMs: v.RAMPART_REALTIME_HEARTBEAT_MS,
    maxSubscriptions: v.RAMPART_REALTIME_MAX_SUBSCRIPTIONS,
    maxConnectionsPerUser: v.RAMPART_REALTIME_MAX_CONNECTIONS_PER_USER,
    pollMs: v.RAMPART_REALTIME_POLL_MS,
    presenceSyncMs: v.RAMPART_REALTIME_PRESENCE_SYNC_MS,
    publishPerSecond: v.RAMPART_REALTIME_PUBLISH_PER_S,
    messagesPerSecond: v.RAMPART_REALTIME_MESSAGES_PER_S,
  };
}

export function pushSlice(v: V): PushConfig {
  return {
    fcmServiceAccount: v.RAMPART_FCM_SERVICE_ACCOUNT,
    fcmUrl: v.RAMPART_FCM_URL,
    apnsKey: v.RAMPART_APNS_KEY,
    apnsKeyId: v.RAMPART_APNS_KEY_ID,
    apnsTeamId: v.RAMPART_APNS_TEAM_ID,
    apnsTopic: v.RAMPART_APNS_TOPIC,
    apnsUrl: v.RAMPART_APNS_URL,
    vapidPublicKey: v.RAMPART_VAPID_PUBLIC_KEY,
    vapidPrivateKey: v.RAMPART_VAPID_PRIVATE_KEY,
    vapidSubject: v.RAMPART_VAPID_SUBJECT,
    timeoutMs: v.RAMPART_PUSH_TIMEOUT_MS,
    retries: v.RAMPART_PUSH_RETRIES,
    retryBaseMs: v.RAMPART_PUSH_RETRY_BASE_MS,
    breakerFailures: v.RAMPART_PUSH_BREAKER_FAILURES,
    breakerOpenMs: v.RAMPART_PUSH_BREAKER_OPEN_MS,
    keepDays: v.RAMPART_NOTIFICATIONS_KEEP_DAYS,
    allowHttp: v.RAMPART_PUSH_ALLOW_HTTP,
  };
}
