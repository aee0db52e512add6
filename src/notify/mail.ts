/**
 * Outgoing mail. With `RAMPART_SMTP_URL` mail goes to that SMTP server (nodemailer); without
 * it each message is written as an `.eml` file under `<data dir>/mail/`, so development works
 * without a mail server and nothing is silently dropped. Sending never blocks a response: a
 * request queues the message and answers at once, so a reply takes the same time whether or
 * not a mail was sent (no account enumeration by timing). Failed sends are retried with
 * backoff and logged; the counters are in the metrics.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import nodemailer, { type Transporter } from 'nodemailer';
import type { Logger } from 'pino';
import { uuidv7 } from '../core/ids.js';

/** One message. */
export interface Mail {
  to: string;
  subject: string;
  text: string;
  html?: string;
}

const ATTEMPTS = 4;
const SMTP_TIMEOUT_MS = 10_000;

export class Mailer {
  private readonly transport: Transporter | undefined;
  private readonly dir: string;
  private pending = new Set<Promise<void>>();
  /** Messages sent and failed for good, for metrics. */
  readonly counts = { sent: 0, failed: 0 };

  constructor(
    opts: { smtpUrl: string | undefined; from: string; dataDir: string },
    private readonly log: Logger,
    /** Told the final outcome of each message, for metrics. */
    private readonly onResult: (outcome: 'sent' | 'failed') => void = () => {},
    private readonly from = opts.from,
  ) {
    this.dir = join(opts.dataDir, 'mail');
    if (opts.smtpUrl) {
      this.transport = nodemailer.createTransport(opts.smtpUrl, {
        connectionTimeout: SMTP_TIMEOUT_MS,
        greetingTimeout: SMTP_TIMEOUT_MS,
        socketTimeout: SMTP_TIMEOUT_MS,
      });
    }
  }

  /** Where mails go, for the startup log. */
  describe(): string {
    return this.transport ? 'smtp' : `files in ${this.dir}`;
  }

  /** Queue a message; returns at once. */
  send(mail: Mail): void {
    const p = this.deliver(mail).finally(() => this.pending.delete(p));
    this.pending.add(p);
  }

  private async deliver(mail: Mail): Promise<void> {
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      try {
        if (this.transport) {
          await this.transport.sendMail({ from: this.from, ...mail });
        } else {
          mkdirSync(this.dir, { recursive: true });
          const file = join(this.dir, `${uuidv7()}.eml`);
          const body = `From: ${this.from}\r\nTo: ${mail.to}\r\nSubject: ${mail.subject}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${mail.text}\r\n`;
          writeFileSync(file, body, { mode: 0o600 });
        }
        this.counts.sent++;
        this.onResult('sent');
        return;
      } catch (err) {
        const last = attempt === ATTEMPTS;
        this.log[last ? 'error' : 'warn'](
          { err: (err as Error).message, attempt, subject: mail.subject },
          last ? 'mail could not be sent' : 'mail send failed; retrying',
        );
        if (last) {
          this.counts.failed++;
          this.onResult('failed');
          return;
        }
        // Exponential backoff with full jitter.
        await new Promise((r) => setTimeout(r, Math.random() * 500 * 2 ** attempt));
      }
    }
  }

  /** Wait for queued messages (shutdown, tests). */
  async flush(): Promise<void> {
    await Promise.all([...this.pending]);
  }

  close(): void {
    this.transport?.close();
  }
}
