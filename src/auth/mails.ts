/** The text of account mails. Links carry single-use tokens; nothing else secret is mailed. */
import type { Mail } from '../notify/mail.js';

type Kind = 'verify_email' | 'reset_password' | 'change_email' | 'email_changed';

/** The mail of `kind` to `to`; `detail` is the link (or, for email_changed, the new address). */
export function accountMail(kind: Kind, to: string, detail: string): Mail {
  switch (kind) {
    case 'verify_email':
      return {
        to,
        subject: 'Confirm your email address',
        text: `Confirm your email address by opening this link (valid for 24 hours):\n\n${detail}\n\nIf you did not create an account, ignore this mail.`,
      };
    case 'reset_password':
      return {
        to,
        subject: 'Reset your password',
        text: `Someone asked to reset the password of this account. To choose a new password, open this link (valid for 1 hour):\n\n${detail}\n\nIf it was not you, ignore this mail; your password stays as it is.`,
      };
    case 'change_email':
      return {
        to,
        subject: 'Confirm your new email address',
        text: `Confirm that this is the new email address of your account by opening this link (valid for 1 hour):\n\n${detail}`,
      };
    case 'email_changed':
      return {
        to,
        subject: 'Your email address was changed',
        text: `The email address of your account was changed to ${detail}. If it was not you, reset your password and contact support.`,
      };
  }
}
