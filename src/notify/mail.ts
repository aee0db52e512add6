/**
 * Outgoing mail. With `RAMPART_SMTP_URL` mail goes to that SMTP server (nodemailer); without
 * it each message is written as an `.eml` file under `<data dir>/mail/`, so development works
 * without a mail server and nothing is silently dropped.
 *
 * Requests never send mail themselves: they enqueue the built-in `rampart.mail` job (in the
 * transaction of the write that caused it, where there is one), whose retries, backoff and
 * dead-letter state cover an unreachable mail server. A reply therefore takes the same time
 * whether or not a mail was sent (no account enumeration by timing).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import nodemailer, { type Transporter } from 'nodemailer';
import { uuidv7 } from '../core/ids.js';
import { type OutboundPolicy, outboundPolicy, type PolicyObserver } from '../resilience/policy.js';

/** One message. */
export interface Mail {
  to: string;
  subject: string;
  text: string;
  html?: string;
}

const SMTP_TIMEOUT_MS = 10_000;

export class Mailer {
  private readonly transport: Transporter | undefined;
  private readonly dir: string;
  private readonly from: string;
  /** The SMTP server as a dependency: a timeout, a breaker (a dead server fails mails at once), a bulkhead. */
  private readonly policy: OutboundPolicy | undefined;

  constructor(opts: { smtpUrl: string | undefined; from: string; dataDir: string }, observer?: PolicyObserver) {
    this.dir = join(opts.dataDir, 'mail');
    this.from = opts.from;
    if (opts.smtpUrl) {
      this.transport = nodemailer.createTransport(opts.smtpUrl, {
        connectionTimeout: SMTP_TIMEOUT_MS,
        greetingTimeout: SMTP_TIMEOUT_MS,
        socketTimeout: SMTP_TIMEOUT_MS,
      });
      // No retries here: the mail job's own retries and backoff cover a failed attempt.
      this.policy = outboundPolicy(
        'smtp',
        { timeoutMs: 3 * SMTP_TIMEOUT_MS, breaker: { failures: 5 }, halfOpenAfterMs: 60_000, bulkhead: { concurrency: 8, queue: 1000 } },
        observer,
      );
    }
  }

  /** Where mails go, for the startup log. */
  describe(): string {
    return this.transport ? 'smtp' : `files in ${this.dir}`;
  }

  /** Send one message now (one attempt; throws when the server refuses or cannot be reached). */
  async deliver(mail: Mail): Promise<void> {
    const transport = this.transport;
    if (transport && this.policy) {
      await this.policy.execute(async () => {
        await transport.sendMail({ from: this.from, ...mail });
      });
      return;
    }
    mkdirSync(this.dir, { recursive: true });
    const file = join(this.dir, `${uuidv7()}.eml`);
    const body = `From: ${this.from}\r\nTo: ${mail.to}\r\nSubject: ${mail.subject}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${mail.text}\r\n`;
    writeFileSync(file, body, { mode: 0o600 });
  }

  close(): void {
    this.transport?.close();
  }
}
