/**
 * The admin console's live figures: while an admin has the console open (a member of the
 * `rampart-console` channel anywhere in the cluster), every API node publishes its own figures
 * there every two seconds; the console adds the nodes up and draws its charts from the
 * differences. Nobody watching, nothing sent.
 */

import type { Logger } from 'pino';
import type { NodeStats } from '../observability/metrics.js';
import type { ChannelDef, Channels } from '../realtime/channels.js';
import { accessOf } from '../records/access.js';

export const CONSOLE_CHANNEL = 'rampart-console';

/** Admins only; presence tells every node whether anyone is watching; only the server publishes. */
export const consoleChannel: ChannelDef = {
  authorize: ({ auth }) => accessOf(auth) !== 'client',
  presence: true,
  clientPublish: false,
};

export class ConsoleFeed {
  private timer?: NodeJS.Timeout;
  constructor(
    private readonly channels: Channels,
    private readonly node: string,
    private readonly stats: () => Promise<NodeStats>,
    private readonly log: Logger,
    private readonly everyMs = 2000,
  ) {}

  start(): void {
    this.timer = setInterval(
      () => void this.publish().catch((err) => this.log.warn({ err: (err as Error).message }, 'console figures not published')),
      this.everyMs,
    );
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async publish(): Promise<void> {
    if (!this.channels.watched(CONSOLE_CHANNEL)) return;
    // The transitions are left out (they come with the node list): a message stays small.
    const { breakerHistory: _, ...stats } = await this.stats();
    this.channels.publishAsServer(CONSOLE_CHANNEL, 'stats', { node: this.node, kind: 'api', stats });
  }
}
