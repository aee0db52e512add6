/**
 * Dependencies: each outbound dependency's circuit breaker on every node, with the transitions
 * each node remembers; webhook subscriptions with their delivery log.
 */
import { useState } from 'preact/hooks';
import { get, seg, send } from '../api.js';
import type { NodeInfo } from '../stats.js';
import { Badge, fmt, LoadError, loaded, Notice, Section, Table, toneOf, useAction, useLoad } from '../ui.js';

interface Webhook {
  id: string;
  url: string;
  events: string[];
  active: boolean;
  disabled_reason: string | null;
  consecutive_failures: number;
  description: string | null;
}
interface Delivery {
  id: string;
  event: string;
  state: string;
  attempts: number;
  last_status: number | null;
  last_error: string | null;
  last_duration_ms: number | null;
  created_at: string;
  finished_at: string | null;
}

export function DependenciesPage() {
  const nodes = useLoad((s) => get<{ items: NodeInfo[] }>('/admin/nodes', undefined, s), [], 15_000);
  const hooks = useLoad((s) => get<{ items: Webhook[] }>('/admin/webhooks', undefined, s), []);
  const [open, setOpen] = useState<string>();
  const act = useAction();
  const live = (nodes.data?.items ?? []).filter((n) => !n.stale && n.stats);
  const states = live.flatMap((n) => Object.entries(n.stats?.breakers ?? {}).map(([dep, state]) => ({ dep, state, node: n.node })));
  const history = live
    .flatMap((n) => (n.stats?.breakerHistory ?? []).map((h) => ({ ...h, node: n.node })))
    .sort((a, b) => b.at - a.at)
    .slice(0, 100);
  return (
    <>
      <Section title="Circuit breakers">
        <LoadError error={nodes.error} />
        <p class="muted">Every node keeps its own breakers (reported every 30 s); a dependency shows once it has been called.</p>
        <Table
          caption="Breakers by node"
          rows={states}
          rowKey={(s) => `${s.node}/${s.dep}`}
          empty="No outbound dependency has been called yet."
          columns={[
            { label: 'Dependency', cell: (s) => s.dep },
            { label: 'Node', cell: (s) => s.node },
            { label: 'State', cell: (s) => <Badge tone={toneOf(s.state)}>{s.state}</Badge> },
          ]}
        />
        <h3>State history</h3>
        <Table
          caption="Breaker transitions, newest first"
          rows={history}
          rowKey={(h) => `${h.node}/${h.dependency}/${h.at}/${h.to}`}
          empty="No breaker has changed state."
          columns={[
            { label: 'At', cell: (h) => fmt.time(h.at) },
            { label: 'Dependency', cell: (h) => h.dependency },
            {
              label: 'Change',
              cell: (h) => (
                <>
                  <Badge tone={toneOf(h.from)}>{h.from}</Badge> → <Badge tone={toneOf(h.to)}>{h.to}</Badge>
                </>
              ),
            },
            { label: 'Node', cell: (h) => h.node },
          ]}
        />
      </Section>
      <Section title="Webhooks">
        <Notice message={act.message} />
        <LoadError error={hooks.error} />
        <Table
          caption="Webhook subscriptions"
          rows={loaded(hooks, (d) => d.items)}
          rowKey={(w) => w.id}
          empty="No webhook subscription."
          columns={[
            {
              label: 'URL',
              cell: (w) => (
                <button type="button" class="link" aria-expanded={open === w.id} onClick={() => setOpen(open === w.id ? undefined : w.id)}>
                  {w.url}
                </button>
              ),
            },
            { label: 'Events', cell: (w) => w.events.join(', ') },
            {
              label: 'State',
              cell: (w) => (
                <Badge tone={w.active ? 'ok' : 'bad'}>
                  {w.active ? 'active' : `disabled${w.disabled_reason ? `: ${w.disabled_reason}` : ''}`}
                </Badge>
              ),
            },
            { label: 'Failures in a row', num: true, cell: (w) => w.consecutive_failures },
            {
              label: 'Actions',
              cell: (w) => (
                <button
                  type="button"
                  disabled={act.busy}
                  onClick={() =>
                    act.run(
                      `${w.active ? 'Disable' : 'Enable'} ${w.url}`,
                      () => send('PATCH', `/admin/webhooks/${seg(w.id)}`, { active: !w.active }),
                      hooks.reload,
                    )
                  }
                >
                  {w.active ? 'Disable' : 'Enable'}
                </button>
              ),
            },
          ]}
        />
        {open ? <Deliveries key={open} id={open} /> : null}
      </Section>
    </>
  );
}

function Deliveries({ id }: { id: string }) {
  const [cursor, setCursor] = useState<string>();
  const list = useLoad(
    (s) => get<{ items: Delivery[]; next_cursor: string | null }>(`/admin/webhooks/${seg(id)}/deliveries`, { limit: 50, cursor }, s),
    [id, cursor],
  );
  return (
    <>
      <h3>Delivery log</h3>
      <LoadError error={list.error} />
      <Table
        caption="Deliveries, newest first"
        rows={loaded(list, (d) => d.items)}
        rowKey={(d) => d.id}
        empty="Nothing delivered yet."
        columns={[
          { label: 'Created', cell: (d) => fmt.time(d.created_at) },
          { label: 'Event', cell: (d) => d.event },
          { label: 'State', cell: (d) => <Badge tone={toneOf(d.state)}>{d.state}</Badge> },
          { label: 'Attempts', num: true, cell: (d) => d.attempts },
          {
            label: 'Last answer',
            cell: (d) =>
              d.last_status === null
                ? (d.last_error ?? '–')
                : `${d.last_status}${d.last_duration_ms !== null ? ` in ${d.last_duration_ms} ms` : ''}`,
          },
        ]}
      />
      {list.data?.next_cursor ? (
        <button type="button" onClick={() => setCursor(list.data?.next_cursor ?? undefined)}>
          Older
        </button>
      ) : null}
    </>
  );
}
