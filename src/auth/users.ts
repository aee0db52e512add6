/**
 * The built-in `users` collection. An app extends it by declaring `users` with its own fields
 * (and may replace its rules); the account fields below are always there and always protected:
 * the password hash is hidden from every API caller, and email, role, verification and the
 * disabled flag change only through the account routes or an admin.
 */
import { type AppDef, type CollectionDef, type CollectionRules, f, SchemaError } from '../records/schema.js';

export const USERS = 'users';
export const BUILTIN_ROLES = ['admin', 'user'];

/** The account fields every users collection has. */
export function accountFields(roles: string[]): CollectionDef['fields'] {
  return {
    email: f.email({ required: true, unique: true, readOnly: true, description: 'sign-in email (lower case)' }),
    email_verified: f.boolean({ default: false, readOnly: true, description: 'the email address was confirmed' }),
    role: f.select(roles, { required: true, default: 'user', readOnly: true }),
    disabled: f.boolean({ default: false, readOnly: true, description: 'a disabled account cannot sign in or refresh' }),
    password_hash: f.text({ hidden: true }),
  };
}

/** By default a user reads and edits their own record only; admins everything. */
export const DEFAULT_USER_RULES: CollectionRules = { list: 'id = @auth.id', view: 'id = @auth.id', update: 'id = @auth.id' };

/** The app with its users collection completed. */
export function withUsers(app: AppDef): AppDef {
  if (typeof app !== 'object' || app === null) throw new SchemaError('the app must be an object with "collections"');
  const collections = app.collections ?? {};
  const extra = app.auth?.roles ?? [];
  for (const r of extra) {
    if (!/^[a-z][a-z0-9_]{0,31}$/.test(r) || BUILTIN_ROLES.includes(r)) {
      throw new SchemaError(`auth.roles: ${JSON.stringify(r)} must be a lower-case name other than admin and user`);
    }
  }
  const declared = collections[USERS];
  const fields = accountFields([...BUILTIN_ROLES, ...extra]);
  for (const name of Object.keys(declared?.fields ?? {})) {
    if (name in fields) throw new SchemaError(`collection "users", field ${JSON.stringify(name)}: is a built-in account field`);
  }
  const users: CollectionDef = {
    ...declared,
    fields: { ...fields, ...declared?.fields },
    rules: declared?.rules ?? DEFAULT_USER_RULES,
  };
  // users first: other collections refer to it.
  const { [USERS]: _, ...rest } = collections;
  return { ...app, collections: { [USERS]: users, ...rest } };
}
