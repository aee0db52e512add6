/**
 * A Prometheus histogram for the hot path. prom-client's histogram validates and hashes the
 * label object on every observation, even through a labelled child; this one resolves a label
 * set to its counters once, then each observation is a bucket search and three additions.
 * It renders through a prom-client registry (it implements the registry's `get()` contract).
 */
import type { Registry } from 'prom-client';

interface Series {
  labels: Record<string, string>;
  /** Non-cumulative count per bucket; the last slot is +Inf. */
  counts: Float64Array;
  sum: number;
  count: number;
}

/** One labelled series, ready to observe. */
export interface HistogramSeries {
  observe(value: number): void;
}

export class FastHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly series = new Map<string, Series>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly buckets: readonly number[],
    registry: Registry,
  ) {
    registry.registerMetric(this as never);
  }

  /** The series for a label set; keep it and observe on it. `key` must identify the labels. */
  labelled(key: string, labels: Record<string, string>): HistogramSeries {
    let s = this.series.get(key);
    if (!s) {
      s = { labels, counts: new Float64Array(this.buckets.length + 1), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    const series = s;
    const bounds = this.buckets;
    return {
      observe(value: number) {
        let i = 0;
        while (i < bounds.length && value > (bounds[i] as number)) i++;
        series.counts[i] = (series.counts[i] ?? 0) + 1;
        series.sum += value;
        series.count++;
      },
    };
  }

  /**
   * Every series added up: the count per bucket (non-cumulative; the last slot is +Inf), and how
   * many observations carry labels that `pick` selects.
   */
  totals(pick: (labels: Record<string, string>) => boolean): { counts: number[]; count: number; picked: number } {
    const counts = new Array<number>(this.buckets.length + 1).fill(0);
    let count = 0;
    let picked = 0;
    for (const s of this.series.values()) {
      s.counts.forEach((n, i) => {
        counts[i] = (counts[i] as number) + n;
      });
      count += s.count;
      if (pick(s.labels)) picked += s.count;
    }
    return { counts, count, picked };
  }

  /** prom-client registry contract: the current values. */
  async get() {
    const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
    for (const s of this.series.values()) {
      let cumulative = 0;
      this.buckets.forEach((le, i) => {
        cumulative += s.counts[i] ?? 0;
        values.push({ labels: { le, ...s.labels }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { le: '+Inf', ...s.labels }, value: s.count, metricName: `${this.name}_bucket` });
      values.push({ labels: s.labels, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: s.labels, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  /** prom-client registry contract. */
  reset(): void {
    this.series.clear();
  }
}
