/** Schedules: every cron schedule with its last and next tick, the last run's state and node; run one now. */
import { get, seg, send } from '../api.js';
import { Badge, fmt, LoadError, loaded, Notice, Table, toneOf, useAction, useLoad } from '../ui.js';

interface Schedule {
  name: string;
  cron: string;
  tz: string;
  job: string;
  missed: string;
  last_tick: string | null;
  next_tick: string | null;
  last_fired_at: string | null;
  last_status: string | null;
  last_node: string | null;
  skipped: number;
}

export function SchedulesPage() {
  const list = useLoad((s) => get<{ items: Schedule[] }>('/admin/schedules', undefined, s), [], 15_000);
  const act = useAction();
  return (
    <>
      <Notice message={act.message} />
      <LoadError error={list.error} />
      <Table
        caption="Cron schedules"
        rows={loaded(list, (d) => d.items)}
        rowKey={(s) => s.name}
        empty="No schedule is declared."
        columns={[
          { label: 'Schedule', cell: (s) => <strong>{s.name}</strong> },
          { label: 'Cron', cell: (s) => <code>{`${s.cron} (${s.tz})`}</code> },
          { label: 'Job', cell: (s) => s.job },
          { label: 'Last run', cell: (s) => fmt.ago(s.last_fired_at ?? s.last_tick) },
          { label: 'Next run', cell: (s) => fmt.time(s.next_tick) },
          { label: 'Status', cell: (s) => (s.last_status ? <Badge tone={toneOf(s.last_status)}>{s.last_status}</Badge> : '–') },
          { label: 'Node', cell: (s) => s.last_node ?? '–' },
          {
            label: 'Actions',
            cell: (s) => (
              <button
                type="button"
                disabled={act.busy}
                onClick={() => act.run(`Run ${s.name}`, () => send('POST', `/admin/schedules/${seg(s.name)}/run`), list.reload)}
              >
                Run now
              </button>
            ),
          },
        ]}
      />
    </>
  );
}
