//! SIP: messages, transactions, dialogs.
