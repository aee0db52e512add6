/**
 * Alert delivery: each alert becomes one job per channel (a generic webhook, a Slack-compatible
 * webhook, email), so a dead channel does not hold the others up; the job retries with backoff,
 * and the HTTP calls go through the `alerts` outbound dependency with its breaker and timeout.
 */
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { AlertChannel } from '../core/config.js';
import { MAIL_JOB } from '../jobs/builtins.js';
import { type JobDef, type JobsClient, job } from '../jobs/define.js';
import type { HttpDependency } from '../resilience/http-client.js';
import type { CheckResult } from './checks.js';

export const ALERT_JOB = 'rampart.alert';

/** One alert on one channel. */
export interface AlertMessage {
  channel: number;
  kind: 'alert' | 'recovery' | 'reminder';
  check: string;
  status: string;
  message: string;
  at: string;
  source: string;
}

export interface AlertsDeps {
  channels: AlertChannel[];
  http: () => HttpDependency;
  jobs: () => JobsClient;
  log: Logger;
  /** Names this deployment in messages (RAMPART_PUBLIC_URL or the node). */
  source: string;
  registry: Registry;
}

const title = (m: AlertMessage) =>
  `${m.kind === 'recovery' ? 'RESOLVED' : m.kind === 'reminder' ? 'STILL FAILING' : 'FAILING'}: ${m.check} on ${m.source}`;

export class Alerts {
  private readonly sent: Counter;
  private readonly failed: Counter;
  constructor(private readonly d: AlertsDeps) {
    this.sent = new Counter({
      name: 'rampart_alerts_sent_total',
      help: 'Alert notifications delivered, by channel type and kind (alert, reminder, recovery)',
      labelNames: ['channel', 'kind'],
      registers: [d.registry],
    });
    this.failed = new Counter({
      name: 'rampart_alert_delivery_failures_total',
      help: 'Alert delivery attempts that failed (each is retried), by channel type',
      labelNames: ['channel'],
      registers: [d.registry],
    });
  }

  /** Enqueue the alert on every channel. */
  async raise(kind: AlertMessage['kind'], r: CheckResult): Promise<void> {
    const at = new Date().toISOString();
    for (let i = 0; i < this.d.channels.length; i++) {
      await this.d
        .jobs()
        .enqueue(ALERT_JOB, { channel: i, kind, check: r.name, status: r.status, message: r.message, at, source: this.d.source });
    }
    if (this.d.channels.length === 0)
      this.d.log.warn({ check: r.name, kind }, 'routine check alert, but no alert channels are configured (RAMPART_ALERT_CHANNELS)');
  }

  job(): Record<string, JobDef> {
    return {
      [ALERT_JOB]: job<AlertMessage>({
        queue: 'rampart.alerts',
        retries: 8,
        backoff: { baseMs: 2000, capMs: 10 * 60_000 },
        timeoutMs: 60_000,
        handler: async (m, ctx) => {
          const channel = this.d.channels[m.channel];
          if (!channel) return; // The configuration changed since: nothing to send to.
          try {
            await this.deliver(channel, m, ctx.idempotencyKey);
            this.sent.inc({ channel: channel.type, kind: m.kind });
          } catch (err) {
            this.failed.inc({ channel: channel.type });
            this.d.log.warn(
              { channel: channel.name ?? channel.type, check: m.check, attempt: ctx.attempt, err: (err as Error).message },
              'alert delivery failed; retrying',
            );
            throw err;
          }
        },
      }),
    };
  }

  private async deliver(channel: AlertChannel, m: AlertMessage, key: string): Promise<void> {
    if (channel.type === 'email') {
      for (const to of channel.to) {
        await this.d
          .jobs()
          .enqueue(MAIL_JOB, { to, subject: `[rampart] ${title(m)}`, text: `${title(m)}\n\n${m.message}\n\nAt ${m.at}.\n` });
      }
      return;
    }
    const body =
      channel.type === 'slack'
        ? { text: `${m.kind === 'recovery' ? ':white_check_mark:' : ':rotating_light:'} *${title(m)}*\n${m.message}` }
        : { kind: m.kind, check: m.check, status: m.status, message: m.message, at: m.at, source: m.source };
    const res = await this.d.http().fetch(channel.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key },
      body: JSON.stringify(body),
    });
    await res.body?.cancel().catch(() => {});
    if (!res.ok) throw new Error(`${channel.type} answered ${res.status}`);
  }
}
