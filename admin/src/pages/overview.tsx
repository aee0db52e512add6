/**
 * Overview: dependencies' health (this node's /readyz), the cluster's processes, live request
 * rate, error rate and latency (every API node publishes its figures on the console channel
 * while an admin watches), queues, open breakers, the last backup and the routine checks.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { client, get } from '../api.js';
import { type Queue, queueColumns } from '../queues.js';
import { combine, type Interval, interval, type NodeInfo, type NodeStats } from '../stats.js';
import { Badge, fmt, LoadError, loaded, Section, Spark, Table, toneOf, useLoad } from '../ui.js';

interface Ready {
  status: string;
  checks: Record<string, { status: string; duration_ms: number; error?: string }>;
  dependencies?: Record<string, { state: string; executing: number; queued: number }>;
  realtime?: { fanout: string; up: boolean; connections: number };
  redis?: { up: boolean };
  replicas?: Array<{ name: string; up: boolean; lagBytes: number; error?: string }>;
}

/** Everything this node depends on, from its /readyz: what decides readiness, then what is shown only. */
function services(r: Ready): Array<{ name: string; state: string; detail: string }> {
  return [
    ...Object.entries(r.checks).map(([name, c]) => ({ name, state: c.status, detail: c.error ?? `answered in ${c.duration_ms} ms` })),
    ...(r.redis
      ? [{ name: 'redis', state: r.redis.up ? 'ok' : 'fail', detail: r.redis.up ? 'connected' : 'unreachable: limits and cache fall back' }]
      : []),
    ...(r.realtime
      ? [
          {
            name: `realtime fan-out (${r.realtime.fanout})`,
            state: r.realtime.up ? 'ok' : 'warn',
            detail: `${r.realtime.connections} connections here${r.realtime.up ? '' : '; events come from the log'}`,
          },
        ]
      : []),
    ...(r.replicas ?? []).map((x) => ({
      name: `replica ${x.name}`,
      state: x.up ? 'ok' : 'fail',
      detail: x.up ? `${fmt.bytes(x.lagBytes)} behind` : (x.error ?? 'down'),
    })),
    ...Object.entries(r.dependencies ?? {}).map(([name, d]) => ({
      name: `${name} (outbound)`,
      state: d.state,
      detail: `breaker ${d.state}; ${d.executing} running, ${d.queued} queued`,
    })),
  ];
}
const POINTS = 60;

/** The cluster's live figures: one point per round of node reports. */
function useLive(): { points: Array<ReturnType<typeof combine>>; nodes: number; state: string } {
  const [points, setPoints] = useState<Array<ReturnType<typeof combine>>>([]);
  const [nodes, setNodes] = useState(0);
  const [state, setState] = useState('connecting');
  const last = useRef(new Map<string, NodeStats>());
  const latest = useRef(new Map<string, { at: number; i: Interval }>());
  useEffect(() => {
    const stopState = client.realtime.onState(setState);
    const ch = client.realtime.join('rampart-console', {
      onMessage(m) {
        if (m.event !== 'stats') return;
        const { node, stats } = m.data as { node: string; stats: NodeStats };
        const i = interval(last.current.get(node), stats);
        last.current.set(node, stats);
        if (i) latest.current.set(node, { at: Date.now(), i });
      },
    });
    // Every 2 s: the nodes heard from lately, added up.
    const t = setInterval(() => {
      const now = Date.now();
      for (const [n, v] of latest.current) if (now - v.at > 6000) latest.current.delete(n);
      setNodes(latest.current.size);
      if (latest.current.size === 0) return;
      const point = combine([...latest.current.values()].map((v) => v.i));
      setPoints((p) => [...p.slice(-(POINTS - 1)), point]);
    }, 2000);
    return () => {
      clearInterval(t);
      ch.leave();
      stopState();
    };
  }, []);
  return { points, nodes, state };
}

export function OverviewPage() {
  const ready = useLoad(
    async (signal) => {
      // /readyz answers 503 with the same document when a check fails.
      const res = await fetch('/readyz', { signal });
      return (await res.json()) as Ready;
    },
    [],
    10_000,
  );
  const nodes = useLoad((s) => get<{ items: NodeInfo[] }>('/admin/nodes', undefined, s), [], 15_000);
  const queues = useLoad((s) => get<{ items: Queue[] }>('/admin/queues', undefined, s), [], 10_000);
  const backups = useLoad((s) => get<{ items: Array<Record<string, unknown>> }>('/admin/backups', undefined, s), [], 60_000);
  const checks = useLoad((s) => get<{ checks: Array<Record<string, string>> }>('/admin/checks', undefined, s), [], 30_000);
  const live = useLive();

  // Until live points arrive: the nodes' last report intervals.
  const reported = combine(
    (nodes.data?.items ?? [])
      .filter((n) => n.kind === 'api' && !n.stale && n.stats)
      .map((n) => interval(n.prev_stats, n.stats as NodeStats))
      .filter((i): i is Interval => i !== undefined),
  );
  const series = live.points.length > 0 ? live.points : [reported];
  const open = new Map<string, string[]>();
  for (const n of nodes.data?.items ?? [])
    for (const [dep, st] of Object.entries(n.stats?.breakers ?? {}))
      if (st !== 'closed' && !n.stale) open.set(dep, [...(open.get(dep) ?? []), `${n.node}: ${st}`]);
  for (const [dep, d] of Object.entries(ready.data?.dependencies ?? {}))
    if (d.state !== 'closed' && !open.has(dep)) open.set(dep, [`this node: ${d.state}`]);
  const lastGood = backups.data?.items.find((b) => !b.error);
  const failing = (checks.data?.checks ?? []).filter((c) => c.status !== 'ok');

  return (
    <div class="grid">
      <Section
        title="Traffic, live"
        actions={
          <Badge tone={live.state === 'open' && live.nodes > 0 ? 'ok' : 'warn'}>
            {live.state !== 'open' ? live.state : live.nodes > 0 ? `live · ${live.nodes} API nodes` : 'waiting for figures'}
          </Badge>
        }
      >
        <div class="sparks">
          <Spark label="Requests/s" points={series.map((p) => p.rps)} format={fmt.num} />
          <Spark label="Errors (5xx)" points={series.map((p) => p.errorPct)} format={(v) => `${v.toFixed(2)} %`} />
          <Spark label="Latency p50" points={series.map((p) => p.p50 ?? Number.NaN)} format={fmt.ms} />
          <Spark label="Latency p99" points={series.map((p) => p.p99 ?? Number.NaN)} format={fmt.ms} />
        </div>
      </Section>
      <Section title="Dependencies" actions={ready.data ? <Badge tone={toneOf(ready.data.status)}>{ready.data.status}</Badge> : null}>
        <LoadError error={ready.error} />
        <Table
          caption="Dependencies as this node sees them"
          rows={loaded(ready, services)}
          rowKey={(x) => x.name}
          columns={[
            { label: 'Dependency', cell: (x) => x.name },
            { label: 'Status', cell: (x) => <Badge tone={toneOf(x.state)}>{x.state}</Badge> },
            { label: 'Detail', cell: (x) => x.detail },
          ]}
        />
      </Section>
      <Section title="Nodes">
        <LoadError error={nodes.error} />
        <Table
          caption="Processes of the cluster"
          rows={loaded(nodes, (d) => d.items)}
          rowKey={(n) => n.node}
          empty="No process has reported yet (each reports every 30 s)."
          columns={[
            { label: 'Node', cell: (n) => n.node },
            { label: 'Kind', cell: (n) => n.kind },
            { label: 'State', cell: (n) => <Badge tone={n.stale ? 'warn' : 'ok'}>{n.stale ? 'stale' : 'up'}</Badge> },
            { label: 'Started', cell: (n) => fmt.ago(n.started_at) },
            { label: 'Last report', cell: (n) => fmt.ago(n.seen_at) },
            {
              label: 'Requests/s',
              num: true,
              cell: (n) => {
                const i = n.stats ? interval(n.prev_stats, n.stats) : undefined;
                return i ? fmt.num(i.requests / i.seconds) : '–';
              },
            },
          ]}
        />
      </Section>
      <Section title="Queues">
        <LoadError error={queues.error} />
        <Table
          caption="Job queues"
          rows={loaded(queues, (d) => d.items)}
          rowKey={(q) => q.queue}
          columns={[{ label: 'Queue', cell: (q) => <a href={`#/jobs/${encodeURIComponent(q.queue)}`}>{q.queue}</a> }, ...queueColumns]}
        />
      </Section>
      <Section title="Open circuit breakers">
        {open.size === 0 ? (
          <p class="muted">Every breaker is closed.</p>
        ) : (
          <ul>
            {[...open].map(([dep, where]) => (
              <li key={dep}>
                <Badge tone="bad">{dep}</Badge> {where.join(', ')}
              </li>
            ))}
          </ul>
        )}
      </Section>
      <Section title="Backups and checks">
        <LoadError error={backups.error ?? checks.error} />
        <p>
          Last backup:{' '}
          {lastGood ? (
            <>
              <strong>{String(lastGood.id)}</strong> ({fmt.ago(lastGood.createdAt)}, {fmt.bytes(lastGood.bytes)})
            </>
          ) : (
            <span class="muted">none yet</span>
          )}
        </p>
        <p>
          Routine checks:{' '}
          {failing.length === 0 ? (
            <Badge tone="ok">all passing</Badge>
          ) : (
            failing.map((c) => (
              <Badge key={c.name} tone={toneOf(c.status ?? '')}>
                {c.name}
              </Badge>
            ))
          )}
        </p>
      </Section>
    </div>
  );
}
