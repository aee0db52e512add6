/** Realtime figures on the app's registry. */
import { Counter, Gauge, type Registry } from 'prom-client';

export interface RealtimeMetrics {
  /** Event batches received, by source: local (this node's commits), fanout. */
  received: Counter<'source'>;
  /** Reads of the event log that found events (gaps, catch-up after a lost fan-out). */
  logReads: Counter<string>;
  /** Messages with an event sent to a client. */
  deliveries: Counter<string>;
  /** Clients told to resync (their resume point was no longer in the log). */
  resyncs: Counter<string>;
  /** Connections closed or events withheld by the server, by reason. */
  dropped: Counter<'reason'>;
  /** 1 while the fan-out transport is connected. */
  fanoutUp: Gauge<string>;
}

export function realtimeMetrics(registry: Registry, connections: () => Record<string, number>): RealtimeMetrics {
  const registers = [registry];
  new Gauge({
    name: 'rampart_realtime_connections',
    help: 'Open realtime connections on this node, by transport',
    labelNames: ['transport'],
    registers,
    collect() {
      this.reset();
      for (const [transport, n] of Object.entries(connections())) this.set({ transport }, n);
    },
  });
  return {
    received: new Counter({
      name: 'rampart_realtime_event_batches_total',
      help: 'Event batches received by source',
      labelNames: ['source'],
      registers,
    }),
    logReads: new Counter({
      name: 'rampart_realtime_log_reads_total',
      help: 'Reads of the event log that found events not received through the fan-out',
      registers,
    }),
    deliveries: new Counter({ name: 'rampart_realtime_deliveries_total', help: 'Events sent to clients', registers }),
    resyncs: new Counter({
      name: 'rampart_realtime_resyncs_total',
      help: 'Resuming clients told to resync (their gap was older than the log)',
      registers,
    }),
    dropped: new Counter({
      name: 'rampart_realtime_dropped_total',
      help: 'Connections closed or events withheld by the server, by reason (slow-consumer, heartbeat, token-expired, access-check-failed, …)',
      labelNames: ['reason'],
      registers,
    }),
    fanoutUp: new Gauge({ name: 'rampart_realtime_fanout_up', help: '1 while the realtime fan-out transport is connected', registers }),
  };
}
