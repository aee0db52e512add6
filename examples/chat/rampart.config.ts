/**
 * The example chat app. Rooms have an owner; members of a room read and write its messages;
 * nobody else sees them. Messages appear live to every member online on any node (subscribe to
 * `messages` with `filter: room = "…"`); members who are not connected get a push and an inbox
 * entry; typing indicators and who is in the room go through the `room:<id>` channel; read
 * receipts are records members subscribe to. A new account gets a welcome mail (a job enqueued in
 * the sign-up's transaction, never sent inside the request); admins get a weekly activity report (cron).
 */
import { collection, defineApp, f, job, MAIL_JOB, PermanentJobError, schedule } from 'rampart';

/** The caller owns or is a member of the room `room` (a field of the record the rule is about). */
const memberOf = (room: string) =>
  `${room === 'id' ? 'owner' : `${room}.owner`} = @auth.id || exists(members, room = @record.${room} && user = @auth.id)`;

export default defineApp({
  channels: {
    // `room:<room id>`: typing indicators and presence, for those who may see the room.
    room: {
      presence: true,
      authorize: async ({ auth, param, records }) => {
        if (auth.kind !== 'user') return false;
        return records
          .as(auth)
          .get('rooms', param)
          .then(() => true)
          .catch(() => false);
      },
    },
  },
  collections: {
    users: collection({
      fields: {},
      hooks: {
        // In the sign-up's transaction: the welcome job exists exactly when the account does.
        onCreate: async (user, ctx) => {
          await ctx.jobs.enqueue('welcomeEmail', { userId: user.id }, { uniqueKey: `welcome:${user.id}` });
        },
      },
    }),
    rooms: collection({
      fields: {
        name: f.text({ required: true, min: 1, max: 80, unique: true, description: 'Display name, unique', search: 'A' }),
        topic: f.text({ max: 500, search: 'B' }),
        owner: f.owner(),
      },
      rules: {
        list: memberOf('id'),
        view: memberOf('id'),
        create: '@auth.id != ""',
        update: 'owner = @auth.id',
        delete: 'owner = @auth.id',
      },
    }),
    members: collection({
      fields: {
        room: f.relation('rooms', { required: true, onDelete: 'cascade' }),
        user: f.relation('users', { required: true, onDelete: 'cascade' }),
        role: f.select(['owner', 'member'], { default: 'member' }),
      },
      indexes: [{ fields: ['room', 'user'], unique: true }],
      rules: {
        list: memberOf('room'),
        view: memberOf('room'),
        // The room's owner adds and removes members; a member may leave.
        create: 'room.owner = @auth.id',
        delete: 'room.owner = @auth.id || user = @auth.id',
      },
    }),
    messages: collection({
      fields: {
        room: f.relation('rooms', { required: true, onDelete: 'cascade' }),
        // Searchable: GET …/messages/records?q=resilient&facets=room finds a member's messages, per room.
        body: f.text({ required: true, min: 1, max: 4000, search: 'A' }),
        author: f.owner(),
        edited_at: f.datetime({ readOnly: true }),
      },
      indexes: [['room', 'created_at']],
      rules: {
        list: memberOf('room'),
        view: memberOf('room'),
        create: memberOf('room'),
        update: 'author = @auth.id',
        delete: 'author = @auth.id || room.owner = @auth.id',
      },
      hooks: {
        // Marks edits of the body, inside the same transaction as the edit.
        beforeUpdate: (data, ctx) =>
          'body' in data && data.body !== ctx.existing?.body ? { ...data, edited_at: new Date().toISOString() } : data,
        // Everyone else in the room is notified, in the message's transaction: online members over
        // realtime, the others by push (and in their inbox).
        onCreate: async (msg, ctx) => {
          const room = await ctx.db
            .selectFrom('rooms')
            .select(['name', 'owner'])
            .where('id', '=', msg.room as string)
            .executeTakeFirst();
          const members = await ctx.db
            .selectFrom('members')
            .select('user')
            .where('room', '=', msg.room as string)
            .where('deleted_at', 'is', null)
            .execute();
          const people = new Set([room?.owner as string | null, ...members.map((m) => m.user as string)]);
          people.delete(msg.author as string);
          for (const user of people) {
            if (!user) continue;
            await ctx.notify(user, {
              title: `New message in ${room?.name ?? 'a room'}`,
              body: String(msg.body).slice(0, 140),
              data: { room: msg.room, message: msg.id },
            });
          }
        },
      },
    }),
    // Read receipts: how far each member has read in a room (one record per member and room).
    receipts: collection({
      fields: {
        room: f.relation('rooms', { required: true, onDelete: 'cascade' }),
        user: f.owner(),
        last_read: f.relation('messages', { required: true, onDelete: 'cascade' }),
      },
      indexes: [{ fields: ['room', 'user'], unique: true }],
      rules: {
        list: memberOf('room'),
        view: memberOf('room'),
        create: `user = @auth.id && (${memberOf('room')})`,
        update: 'user = @auth.id',
        delete: 'user = @auth.id',
      },
    }),
  },
  queues: {
    // Mail providers limit senders: at most 50 mails a second from the whole cluster.
    email: { concurrency: 5, rateLimit: { max: 50, perMs: 1000 } },
  },
  jobs: {
    welcomeEmail: job<{ userId: string }>({
      queue: 'email',
      retries: 5,
      async handler({ userId }, ctx) {
        const user = await ctx.records.get('users', userId).catch(() => undefined);
        if (!user) throw new PermanentJobError('the account was deleted before its welcome mail');
        await ctx.mail.send({
          to: String(user.email),
          subject: 'Welcome to Chat',
          text: 'Welcome! Create a room, invite people, and talk.\n\nIf you did not sign up, ignore this mail.',
        });
      },
    }),
    weeklyReport: job({
      queue: 'email',
      timeoutMs: 5 * 60_000,
      async handler(_payload, ctx) {
        const until = ctx.schedule?.tick ?? new Date();
        const since = new Date(until.getTime() - 7 * 86_400_000);
        const rows = await ctx.db
          .selectFrom('messages')
          .innerJoin('rooms', 'rooms.id', 'messages.room')
          .select(['rooms.name as room', (eb) => eb.fn.countAll().as('messages')])
          .where('messages.created_at', '>=', since.toISOString())
          .where('messages.created_at', '<', until.toISOString())
          .where('messages.deleted_at', 'is', null)
          .groupBy('rooms.name')
          .orderBy('messages', 'desc')
          .limit(20)
          .execute();
        const total = rows.reduce((n, r) => n + Number(r.messages), 0);
        const lines = rows.map((r) => `  ${r.room}: ${r.messages}`).join('\n') || '  (no messages)';
        const admins = await ctx.records.list('users', { filter: 'role = "admin"', limit: 200, fields: 'email' });
        for (const admin of admins.items) {
          // Keyed by this job: a retry of the report does not mail an admin twice while the first mail is pending.
          await ctx.jobs.enqueue(
            MAIL_JOB,
            {
              to: String(admin.email),
              subject: `Chat activity, week to ${until.toISOString().slice(0, 10)}`,
              text: `${total} messages in the past week.\n\nBusiest rooms:\n${lines}\n`,
            },
            { uniqueKey: `${ctx.idempotencyKey}:${admin.id}` },
          );
        }
        return { messages: total, rooms: rows.length, mailed: admins.items.length };
      },
    }),
  },
  schedules: {
    // Mondays at 08:00 in Berlin, summer or winter time.
    weeklyReport: schedule('0 8 * * 1', 'weeklyReport', { tz: 'Europe/Berlin' }),
  },
});
