/**
 * OpenTelemetry traces, off unless an OTLP endpoint is configured with the standard variables
 * (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; `OTEL_SERVICE_NAME`,
 * `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*` as usual). Off, the SDK is not
 * even loaded and every helper here is a no-op on the API's no-op tracer.
 *
 * What is traced: a span per HTTP request (route, status, user id — never personal data), child
 * spans for database queries (the statement's text without its values), rate-limit and read-cache
 * lookups, job enqueues; the trace context travels into jobs (stored with the job), into outbox
 * events (the CloudEvents `traceparent` extension) and into outbound calls (`traceparent`
 * header), so one trace shows request → job → push provider. Log lines carry `trace_id` and
 * `span_id` (see logger.ts).
 */
import { type Context, context, propagation, type Span, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';

export const tracer = trace.getTracer('rampart');
let enabled = false;

/** Whether tracing is on in this process. */
export function tracingEnabled(): boolean {
  return enabled;
}

/** Start the SDK when an OTLP endpoint is configured; returns how to flush and stop it. */
export async function startTracing(serviceName: string, env: NodeJS.ProcessEnv = process.env): Promise<() => Promise<void>> {
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (!endpoint || env.OTEL_TRACES_EXPORTER === 'none' || env.OTEL_SDK_DISABLED === 'true') return async () => {};
  const [{ NodeTracerProvider, BatchSpanProcessor }, { OTLPTraceExporter }, { resourceFromAttributes, defaultResource }] =
    await Promise.all([
      import('@opentelemetry/sdk-trace-node'),
      import('@opentelemetry/exporter-trace-otlp-http'),
      import('@opentelemetry/resources'),
    ]);
  const extra = Object.fromEntries(
    (env.OTEL_RESOURCE_ATTRIBUTES ?? '')
      .split(',')
      .map((kv) => kv.split('=').map((s) => decodeURIComponent(s.trim())))
      .filter((kv) => kv.length === 2 && kv[0]),
  );
  const provider = new NodeTracerProvider({
    resource: defaultResource().merge(resourceFromAttributes({ ...extra, 'service.name': env.OTEL_SERVICE_NAME ?? serviceName })),
    // From the given environment (the SDK would read process.env itself).
    spanProcessors: [
      new BatchSpanProcessor(
        new OTLPTraceExporter({
          url: env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? `${endpoint.replace(/\/+$/, '')}/v1/traces`,
        }),
        env.OTEL_BSP_SCHEDULE_DELAY ? { scheduledDelayMillis: Number(env.OTEL_BSP_SCHEDULE_DELAY) } : {},
      ),
    ],
  });
  // The AsyncLocalStorage context manager and the W3C trace-context propagator.
  provider.register();
  enabled = true;
  return async () => {
    await provider.forceFlush().catch(() => {});
    await provider.shutdown().catch(() => {});
    enabled = false;
  };
}

/** The current trace context as a W3C `traceparent`, or undefined when not tracing. */
export function currentTraceparent(): string | undefined {
  if (!enabled) return undefined;
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent;
}

/** The context a carrier (`traceparent` header, a stored value) names, for spans started under it. */
export function contextFrom(traceparent: string | undefined, base: Context = context.active()): Context {
  if (!enabled || !traceparent) return base;
  return propagation.extract(base, { traceparent });
}

/** Run `fn` in a span (a child of the active one); errors mark the span and pass through. */
export async function inSpan<T>(
  name: string,
  attributes: Record<string, string | number | boolean | undefined>,
  fn: (span: Span) => Promise<T>,
  opts: { kind?: SpanKind; parent?: Context } = {},
): Promise<T> {
  if (!enabled) return fn(trace.wrapSpanContext({ traceId: '', spanId: '', traceFlags: 0 }));
  const attrs = Object.fromEntries(Object.entries(attributes).filter(([, v]) => v !== undefined)) as Record<
    string,
    string | number | boolean
  >;
  return tracer.startActiveSpan(
    name,
    { kind: opts.kind ?? SpanKind.INTERNAL, attributes: attrs },
    opts.parent ?? context.active(),
    async (span) => {
      try {
        return await fn(span);
      } catch (err) {
        span.recordException(err as Error);
        span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
        throw err;
      } finally {
        span.end();
      }
    },
  );
}

/** A span for something that already happened (a query, measured by its driver hook). */
export function recordSpan(name: string, startMs: number, endMs: number, attributes: Record<string, string | number | boolean>): void {
  if (!enabled || !trace.getActiveSpan()) return;
  tracer.startSpan(name, { kind: SpanKind.CLIENT, startTime: startMs, attributes }).end(endMs);
}

/** The ids a log line carries while a span is active. */
export function logIds(): { trace_id?: string; span_id?: string } {
  if (!enabled) return {};
  const s = trace.getActiveSpan()?.spanContext();
  return s?.traceId ? { trace_id: s.traceId, span_id: s.spanId } : {};
}

export { context, SpanKind, SpanStatusCode, trace };
