"""The e-mail transport every mail protocol shares: a sans-IO part (reading mails within
limits, composing mails with stable Message-IDs, deciding whether a mail comes from the partner
whose mailbox it is in) and the I/O (an IMAP listener per partner mailbox, an SMTP sender)."""
