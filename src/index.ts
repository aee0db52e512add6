/** The public API for app code: declare collections, build and run an app. */
export { type CreateAppOptions, createApp, type RampartApp } from './app.js';
export { type Config, loadConfig } from './core/config.js';
export { type ErrorCode, RampartError } from './core/errors.js';
export { MAIL_JOB } from './jobs/builtins.js';
export {
  type EnqueuedJob,
  type EnqueueOptions,
  type JobContext,
  type JobDef,
  type JobsClient,
  job,
  type MissedTicks,
  type NotificationInput,
  type NotifyFn,
  PermanentJobError,
  type QueueDef,
  RetryLaterError,
  type ScheduleDef,
  schedule,
} from './jobs/define.js';
export type { Mail } from './notify/mail.js';
export type { Notification } from './notify/notifications.js';
export type { ChannelDef } from './realtime/channels.js';
export type { AfterHook, BeforeDeleteHook, BeforeWriteHook, HookContext, RecordData, RecordHooks } from './records/hooks.js';
export {
  type AppDef,
  type CollectionDef,
  collection,
  defineApp,
  type FieldDef,
  f,
  type IndexDef,
} from './records/schema.js';
export type { ListParams, ListResult } from './records/service.js';
