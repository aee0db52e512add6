/** Small building blocks shared by the pages: data loading, tables, notices, charts, formats. */
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { describeError } from './api.js';

export interface Loaded<T> {
  data?: T;
  error?: string;
  loading: boolean;
  reload(): void;
}

/** Run `load` now, again when `deps` change, and every `everyMs` when given. */
export function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[], everyMs?: number): Loaded<T> {
  const [state, setState] = useState<{ data?: T; error?: string; loading: boolean }>({ loading: true });
  const [tick, setTick] = useState(0);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  useEffect(() => {
    const ac = new AbortController();
    setState((s) => ({ ...s, loading: true }));
    load(ac.signal).then(
      (data) => !ac.signal.aborted && setState({ data, loading: false }),
      (err) => !ac.signal.aborted && setState((s) => ({ data: s.data, error: describeError(err), loading: false })),
    );
    return () => ac.abort();
  }, [...deps, tick]);
  useEffect(() => {
    if (!everyMs) return;
    const t = setInterval(reload, everyMs);
    return () => clearInterval(t);
  }, [everyMs, reload]);
  return { ...state, reload };
}

/** Run an action, reporting what happened in the page's status line. */
export function useAction(): {
  busy: boolean;
  message: { text: string; error: boolean } | undefined;
  run(what: string, fn: () => Promise<unknown>, done?: () => void): Promise<void>;
} {
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<{ text: string; error: boolean }>();
  const run = useCallback(async (what: string, fn: () => Promise<unknown>, done?: () => void) => {
    setBusy(true);
    setMessage(undefined);
    try {
      await fn();
      setMessage({ text: `${what}: done`, error: false });
      done?.();
    } catch (err) {
      setMessage({ text: `${what}: ${describeError(err)}`, error: true });
    } finally {
      setBusy(false);
    }
  }, []);
  return { busy, message, run };
}

export function Notice({ message }: { message: { text: string; error: boolean } | undefined }) {
  // Always in the page, so screen readers announce what appears in it.
  return (
    <p class={message?.error ? 'notice error' : 'notice'} role={message?.error ? 'alert' : 'status'} aria-live="polite">
      {message?.text ?? ''}
    </p>
  );
}

export function LoadError({ error }: { error: string | undefined }) {
  return error ? (
    <p class="notice error" role="alert">
      {error}
    </p>
  ) : null;
}

export function Section({ title, children, actions }: { title: string; children: ComponentChildren; actions?: ComponentChildren }) {
  const id = `s-${title.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
  return (
    <section aria-labelledby={id} class="card">
      <header class="card-head">
        <h2 id={id}>{title}</h2>
        {actions ? <div class="actions">{actions}</div> : null}
      </header>
      {children}
    </section>
  );
}

export interface Column<R> {
  label: string;
  cell(row: R): ComponentChildren;
  /** Numbers align right. */
  num?: boolean;
}

/** What a table shows of a load: its rows, none after a failure (the error is shown), undefined while loading. */
export function loaded<T, R>(l: Loaded<T>, pick: (data: T) => R[]): R[] | undefined {
  if (l.data !== undefined) return pick(l.data);
  return l.error ? [] : undefined;
}

export function Table<R>({
  rows,
  columns,
  caption,
  empty,
  rowKey,
}: {
  /** Undefined while loading. */
  rows: R[] | undefined;
  columns: Column<R>[];
  caption: string;
  empty?: string;
  rowKey(r: R): string;
}) {
  if (rows === undefined) return <p class="muted loading">Loading…</p>;
  if (rows.length === 0) return <p class="muted">{empty ?? 'Nothing here.'}</p>;
  return (
    <div class="table-wrap">
      <table>
        <caption class="sr-only">{caption}</caption>
        <thead>
          <tr>
            {columns.map((c) => (
              <th scope="col" key={c.label} class={c.num ? 'num' : undefined}>
                {c.label}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((r) => (
            <tr key={rowKey(r)}>
              {columns.map((c) => (
                <td key={c.label} class={c.num ? 'num' : undefined} data-label={c.label}>
                  {c.cell(r)}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function Badge({ tone, children }: { tone: 'ok' | 'warn' | 'bad' | 'info'; children: ComponentChildren }) {
  return <span class={`badge ${tone}`}>{children}</span>;
}

/** A tone for a state word. */
export function toneOf(state: string): 'ok' | 'warn' | 'bad' | 'info' {
  if (['ok', 'closed', 'completed', 'up', 'verified', 'succeeded', 'delivered', 'active', 'none'].includes(state)) return 'ok';
  if (['fail', 'failed', 'open', 'dead', 'down', 'error', 'hard', 'disabled'].includes(state)) return 'bad';
  if (['warn', 'half-open', 'waiting', 'retrying', 'paused', 'soft', 'stale'].includes(state)) return 'warn';
  return 'info';
}

/** A small line chart of the last points (newest right), with its latest value as text. */
export function Spark({ label, points, format }: { label: string; points: number[]; format(v: number): string }) {
  const w = 160;
  const h = 40;
  // A gap (no request in an interval: no latency) is drawn as zero and shown as a dash.
  const values = points.map((v) => (Number.isFinite(v) ? v : 0));
  const max = Math.max(1e-9, ...values);
  const path = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * w},${h - (v / max) * (h - 4) - 2}`).join(' ');
  const last = points[points.length - 1];
  return (
    <figure class="spark">
      <figcaption>
        <span>{label}</span>
        <strong>{last === undefined || !Number.isFinite(last) ? '–' : format(last)}</strong>
      </figcaption>
      <svg viewBox={`0 0 ${w} ${h}`} width={w} height={h} role="img" aria-label={`${label}, last ${points.length} samples`}>
        {points.length > 1 ? <polyline points={path} fill="none" stroke="currentColor" stroke-width="1.5" /> : null}
      </svg>
    </figure>
  );
}

/** Focus the element once it is shown (a page's heading, so keyboard users start there). */
export function useFocus<T extends HTMLElement>(): { ref: { current: T | null } } {
  const ref = useRef<T | null>(null);
  useEffect(() => ref.current?.focus(), []);
  return { ref };
}

export const fmt = {
  time: (v: unknown) => (v === null || v === undefined || v === '' ? '–' : new Date(v as string | number).toLocaleString()),
  ago(v: unknown): string {
    if (v === null || v === undefined) return '–';
    const s = Math.round((Date.now() - new Date(v as string | number).getTime()) / 1000);
    if (s < 0) return `in ${fmt.duration(-s)}`;
    return `${fmt.duration(s)} ago`;
  },
  duration(s: number): string {
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.round(s / 60)} min`;
    if (s < 86400) return `${(s / 3600).toFixed(1)} h`;
    return `${(s / 86400).toFixed(1)} d`;
  },
  ms: (v: number) => (v < 1 ? `${(v * 1000).toFixed(0)} µs` : v < 1000 ? `${v.toFixed(v < 10 ? 1 : 0)} ms` : `${(v / 1000).toFixed(2)} s`),
  bytes(v: unknown): string {
    const n = Number(v);
    if (!Number.isFinite(n)) return '–';
    if (n < 1024) return `${n} B`;
    if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} kB`;
    if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`;
    return `${(n / 1024 ** 3).toFixed(2)} GB`;
  },
  num: (v: number) => v.toLocaleString(undefined, { maximumFractionDigits: 1 }),
  json: (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v)),
};
