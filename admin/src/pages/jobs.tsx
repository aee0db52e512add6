/**
 * Jobs: queues (pause, resume, redrive the dead letters), jobs by queue and state, one job's
 * attempts and errors; retry, cancel.
 */
import { useState } from 'preact/hooks';
import { get, seg, send } from '../api.js';
import { type Queue, queueColumns } from '../queues.js';
import { Badge, fmt, LoadError, loaded, Notice, Section, Table, toneOf, useAction, useLoad } from '../ui.js';

interface Job {
  id: string;
  queue: string;
  name: string;
  state: string;
  attempts: number;
  max_attempts: number;
  run_at: string | null;
  created_at: string;
  finished_at: string | null;
  worker: string | null;
  last_error: string | null;
  schedule: string | null;
  payload?: unknown;
  payload_redacted?: boolean;
  result?: unknown;
  errors?: Array<{ attempt: number; message: string; at: string; stack?: string }>;
}
const STATES = ['', 'waiting', 'active', 'completed', 'dead', 'cancelled'];

export function JobsPage({ args }: { args: string[] }) {
  const [queue, setQueue] = useState(args[0] ?? '');
  const [state, setState] = useState(args[1] ?? '');
  const [cursor, setCursor] = useState<string>();
  const [open, setOpen] = useState<string>();
  const act = useAction();
  const queues = useLoad((s) => get<{ items: Queue[] }>('/admin/queues', undefined, s), [], 10_000);
  const jobs = useLoad(
    (s) =>
      get<{ items: Job[]; next_cursor: string | null }>(
        '/admin/jobs',
        { queue: queue || undefined, state: state || undefined, cursor, limit: 50 },
        s,
      ),
    [queue, state, cursor],
  );
  const reload = () => {
    queues.reload();
    jobs.reload();
  };
  return (
    <>
      <Notice message={act.message} />
      <Section title="Queues">
        <LoadError error={queues.error} />
        <Table
          caption="Queues"
          rows={loaded(queues, (d) => d.items)}
          rowKey={(q) => q.queue}
          columns={[
            { label: 'Queue', cell: (q) => q.queue },
            ...queueColumns,
            {
              label: 'Actions',
              cell: (q) => (
                <span class="row-actions">
                  <button
                    type="button"
                    disabled={act.busy}
                    onClick={() =>
                      act.run(
                        `${q.paused ? 'Resume' : 'Pause'} ${q.queue}`,
                        () => send('POST', `/admin/queues/${seg(q.queue)}/${q.paused ? 'resume' : 'pause'}`),
                        reload,
                      )
                    }
                  >
                    {q.paused ? 'Resume' : 'Pause'}
                  </button>
                  <button
                    type="button"
                    disabled={act.busy || !(q.counts.dead ?? 0)}
                    onClick={() =>
                      act.run(`Redrive the dead letters of ${q.queue}`, () => send('POST', `/admin/queues/${seg(q.queue)}/redrive`), reload)
                    }
                  >
                    Redrive dead
                  </button>
                </span>
              ),
            },
          ]}
        />
      </Section>
      <Section title="Jobs">
        <div class="toolbar">
          <label>
            Queue
            <select
              value={queue}
              onChange={(e) => {
                setCursor(undefined);
                setQueue((e.target as HTMLSelectElement).value);
              }}
            >
              <option value="">all</option>
              {(queues.data?.items ?? []).map((q) => (
                <option key={q.queue} value={q.queue}>
                  {q.queue}
                </option>
              ))}
            </select>
          </label>
          <label>
            State
            <select
              value={state}
              onChange={(e) => {
                setCursor(undefined);
                setState((e.target as HTMLSelectElement).value);
              }}
            >
              {STATES.map((s) => (
                <option key={s} value={s}>
                  {s || 'all'}
                </option>
              ))}
            </select>
          </label>
          <button type="button" onClick={jobs.reload}>
            Refresh
          </button>
        </div>
        <LoadError error={jobs.error} />
        <Table
          caption="Jobs, newest first"
          rows={loaded(jobs, (d) => d.items)}
          rowKey={(j) => j.id}
          empty="No job matches."
          columns={[
            {
              label: 'Job',
              cell: (j) => (
                <button type="button" class="link" aria-expanded={open === j.id} onClick={() => setOpen(open === j.id ? undefined : j.id)}>
                  {j.name}
                </button>
              ),
            },
            { label: 'Queue', cell: (j) => j.queue },
            { label: 'State', cell: (j) => <Badge tone={toneOf(j.state)}>{j.state}</Badge> },
            { label: 'Attempts', num: true, cell: (j) => `${j.attempts}/${j.max_attempts}` },
            { label: 'Created', cell: (j) => fmt.ago(j.created_at) },
            { label: 'Last error', cell: (j) => <span class="clip">{j.last_error ?? ''}</span> },
            {
              label: 'Actions',
              cell: (j) => (
                <span class="row-actions">
                  {['dead', 'cancelled', 'waiting'].includes(j.state) ? (
                    <button
                      type="button"
                      disabled={act.busy}
                      onClick={() => act.run(`Retry ${j.name}`, () => send('POST', `/admin/jobs/${seg(j.id)}/retry`), reload)}
                    >
                      Retry
                    </button>
                  ) : null}
                  {['waiting', 'active'].includes(j.state) ? (
                    <button
                      type="button"
                      class="danger"
                      disabled={act.busy}
                      onClick={() => act.run(`Cancel ${j.name}`, () => send('POST', `/admin/jobs/${seg(j.id)}/cancel`), reload)}
                    >
                      Cancel
                    </button>
                  ) : null}
                </span>
              ),
            },
          ]}
        />
        <div class="pager">
          {jobs.data?.next_cursor ? (
            <button type="button" onClick={() => setCursor(jobs.data?.next_cursor ?? undefined)}>
              Older
            </button>
          ) : null}
        </div>
      </Section>
      {open ? <JobDetail key={open} id={open} /> : null}
    </>
  );
}

function JobDetail({ id }: { id: string }) {
  const job = useLoad((s) => get<Job>(`/admin/jobs/${seg(id)}`, undefined, s), [id]);
  const j = job.data;
  return (
    <Section title={j ? `${j.name} · ${j.id}` : 'Job'}>
      <LoadError error={job.error} />
      {j ? (
        <>
          <dl class="facts">
            <dt>State</dt>
            <dd>
              <Badge tone={toneOf(j.state)}>{j.state}</Badge>
            </dd>
            <dt>Run at</dt>
            <dd>{fmt.time(j.run_at)}</dd>
            <dt>Finished</dt>
            <dd>{fmt.time(j.finished_at)}</dd>
            <dt>Worker</dt>
            <dd>{j.worker ?? '–'}</dd>
            <dt>Schedule</dt>
            <dd>{j.schedule ?? '–'}</dd>
          </dl>
          <h3>Payload</h3>
          <pre>{j.payload_redacted ? '(sensitive: not shown)' : JSON.stringify(j.payload, null, 2)}</pre>
          {j.result !== null && j.result !== undefined ? (
            <>
              <h3>Result</h3>
              <pre>{JSON.stringify(j.result, null, 2)}</pre>
            </>
          ) : null}
          <h3>Attempts with errors</h3>
          <Table
            caption="Errors by attempt"
            rows={j.errors ?? []}
            rowKey={(e) => `${e.attempt}-${e.at}`}
            empty="No attempt failed."
            columns={[
              { label: 'Attempt', num: true, cell: (e) => e.attempt },
              { label: 'At', cell: (e) => fmt.time(e.at) },
              { label: 'Error', cell: (e) => e.message },
            ]}
          />
        </>
      ) : null}
    </Section>
  );
}
