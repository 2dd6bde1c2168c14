//! The command line: every command, flag and its help text (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Keeps a local database in sync with IMAP and JMAP mail accounts.
#[derive(Debug, Parser)]
#[command(
    name = "mailsync",
    version,
    about,
    after_help = concat!(
        "Examples:\n",
        "  mailsync account add work --jmap https://mail.example.org/.well-known/jmap \\\n",
        "      --user me@example.org --password-env WORK_PW\n",
        "  mailsync sync --once\n",
        "  mailsync emails --role inbox --limit 20\n",
        "  mailsync flag 42 --seen\n",
        "\n",
        "Environment:\n",
        "  MAILSYNC_DB             default for --db\n",
        "  RUST_LOG                tracing filter (overrides -v)\n",
        "  MAILSYNC_POLL_INTERVAL  how often `sync` polls servers without push (default 30s)\n",
        "  MAILSYNC_LEASE_TTL      how long an account stays locked by a killed process (default 30s)\n",
        "\n",
        "Exit codes:\n",
        "  0 ok, 1 other failure, 2 usage, 3 not found, 4 needs the user (authentication),\n",
        "  5 server unreachable, 6 database cannot be opened"
    )
)]
pub struct Cli {
    /// Database URL: sqlite://PATH?mode=rwc or postgres://USER@HOST/DB.
    /// Default: $XDG_DATA_HOME/mailsync/mailsync.db (else ~/.local/share/mailsync/mailsync.db).
    #[arg(long, global = true, env = "MAILSYNC_DB", value_name = "URL")]
    pub db: Option<String>,

    /// More log output on stderr: -v info, -vv debug (RUST_LOG overrides).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add, test, list and remove accounts.
    #[command(
        subcommand,
        after_help = "Examples:\n  mailsync account add work --jmap https://jmap.example.org/.well-known/jmap --user me --password-env PW\n  mailsync account list --json\n  mailsync account test work\n  mailsync account remove work"
    )]
    Account(AccountCmd),
    /// Synchronise accounts once (--once) or continuously until SIGINT/SIGTERM.
    #[command(after_help = concat!(
        "Examples:\n",
        "  mailsync sync --once                  one cycle per account, then exit\n",
        "  mailsync sync --account work --once\n",
        "  mailsync sync                         daemon: IDLE/push/polling until Ctrl-C or SIGTERM\n",
        "\n",
        "--bodies is stored on the selected accounts (it becomes their policy for later syncs too).\n",
        "Servers without push are polled every 30 s; set MAILSYNC_POLL_INTERVAL (e.g. 5s, 500ms)\n",
        "or --poll-interval to change that.\n",
        "\n",
        "With --once the exit code is 0 when every account synced, else that of the first failure\n",
        "(3 not found, 4 needs the user, 5 unreachable, 1 other); the daemon exits 0 after a clean\n",
        "shutdown."
    ))]
    Sync(SyncArgs),
    /// List mailboxes with their message and unread counts.
    #[command(
        after_help = "Examples:\n  mailsync mailboxes\n  mailsync mailboxes --account work --json\n\n--json prints one object per line: account, name, role (or null), total, unread."
    )]
    Mailboxes(MailboxesArgs),
    /// List emails, newest first.
    #[command(after_help = concat!(
        "Examples:\n",
        "  mailsync emails --role inbox --limit 20\n",
        "  mailsync emails --account work --mailbox Archive --json\n",
        "  mailsync emails --thread L3f9c0a1b2c3d4e5f   (ids from `mailsync threads`)\n",
        "\n",
        "--json prints one object per line: id, account, mailboxes, message_id, subject, from,\n",
        "to, date (RFC 3339), received_at, seen, flagged, answered, size, has_attachments, preview."
    ))]
    Emails(EmailsArgs),
    /// List conversations, newest activity first.
    #[command(after_help = concat!(
        "Examples:\n",
        "  mailsync threads --role inbox --limit 20\n",
        "  mailsync threads --account work --json\n",
        "  mailsync emails --thread L3f9c0a1b2c3d4e5f     the messages of one conversation\n",
        "\n",
        "Thread ids are the server's (JMAP threadId, IMAP THREADID where offered); otherwise\n",
        "conversations are computed locally from Message-ID, In-Reply-To and References (a bare\n",
        "\"Re:\" subject without references joins its base subject).\n",
        "--json prints one object per line: account, thread, subject, participants, count,\n",
        "unread, last_date (RFC 3339)."
    ))]
    Threads(ThreadsArgs),
    /// Search the local database (subject, addresses, cached bodies), best match first.
    #[command(after_help = concat!(
        "Examples:\n",
        "  mailsync search budget\n",
        "  mailsync search '\"next quarter\" from:alice is:unread'\n",
        "  mailsync search 'subject:invoice in:archive after:2026-01-01 before:2026-02-01' --json\n",
        "\n",
        "Syntax: words and \"quoted phrases\" (all must match); from:, to: (To/Cc/Bcc), subject:;\n",
        "in:MAILBOX (name or role); is:unread, is:read, is:flagged, is:unflagged;\n",
        "has:attachment; before:YYYY-MM-DD, after:YYYY-MM-DD (arrival, UTC; after: includes the\n",
        "day). Bodies are searched only where cached (see sync --bodies). A query that does not\n",
        "parse is a usage error (exit code 2).\n",
        "--json prints one object per line: id, account, subject, from, date, mailboxes,\n",
        "snippet, score, origin (\"local\")."
    ))]
    Search(SearchArgs),
    /// Show an email's body (fetched from the server on first use, then cached).
    #[command(
        after_help = "Examples:\n  mailsync show 42\n  mailsync show 42 --html\n  mailsync show 42 --json   (headers, text, html and attachment metadata)"
    )]
    Show(ShowArgs),
    /// Mark emails seen/unseen or flagged/unflagged (applied locally now, sent at the next sync).
    #[command(
        after_help = "Examples:\n  mailsync flag 42 43 --seen\n  mailsync flag 42 --flagged --now\n\nWorks offline: the change is queued and sent at the next sync (--now: sync right away)."
    )]
    Flag(FlagArgs),
    /// Move emails to a mailbox (by name or role).
    #[command(
        name = "move",
        after_help = "Examples:\n  mailsync move 42 --to archive\n  mailsync move 42 43 --to \"Projects/2026\" --now\n\nWorks offline: the change is queued and sent at the next sync (--now: sync right away)."
    )]
    Move(MoveArgs),
    /// Delete emails (applied locally now, sent at the next sync).
    #[command(after_help = "Examples:\n  mailsync delete 42\n  mailsync delete 42 43 --now")]
    Delete(DeleteArgs),
    /// Cancel the last change that is still queued (restores the local state).
    #[command(
        after_help = "Examples:\n  mailsync undo\n  mailsync undo --account work\n\nWithout --account: the account whose change was queued last.\nOnly changes still queued (not yet sent) can be undone from the command line: sent changes\nare remembered only by the process that sent them."
    )]
    Undo(UndoArgs),
    /// Send a message through the outbox (sent now when the account is reachable).
    #[command(after_help = concat!(
        "Examples:\n",
        "  mailsync send --account work --to bob@example.org --subject Hi --body 'Hello Bob'\n",
        "  mailsync send --account work --to a@x.org --cc b@x.org --subject Report \\\n",
        "      --body-file report.txt --attach report.pdf\n",
        "\n",
        "The sender is the account's address (and display name). When the account cannot be\n",
        "reached the message stays queued and goes out at the next sync; the exit code says why\n",
        "it was not sent (5 unreachable, 4 needs the user). --queue-only never connects."
    ))]
    Send(SendArgs),
    /// Per account: last sync time and result, pending and failed changes.
    #[command(after_help = "Examples:\n  mailsync status\n  mailsync status --json")]
    Status(JsonArg),
    /// List, retry or dismiss changes the server refused.
    #[command(
        after_help = "Examples:\n  mailsync failed\n  mailsync failed retry 3\n  mailsync failed dismiss 3"
    )]
    Failed(FailedArgs),
    /// The sync log, newest first.
    #[command(
        after_help = "Examples:\n  mailsync log --limit 5\n  mailsync log --account work --json"
    )]
    Log(LogArgs),
}

#[derive(Debug, Subcommand)]
pub enum AccountCmd {
    /// Add an account (the connection is tested first; nothing is stored when it fails).
    #[command(after_help = concat!(
        "Examples:\n",
        "  mailsync account add work --imap imap.example.org --smtp smtp.example.org \\\n",
        "      --user me@example.org --password-cmd 'pass show mail/work'\n",
        "  mailsync account add home --jmap https://jmap.example.org/.well-known/jmap \\\n",
        "      --user me@example.org --password-env HOME_PW --bodies 64kb\n",
        "\n",
        "The database keeps how to get the password (the variable name or the command), never\n",
        "the password. `plain` security and http:// URLs are refused unless the host is loopback\n",
        "or --allow-plaintext is given. Default ports: IMAP 993 (tls) / 143; SMTP 465 (tls) /\n",
        "587 (starttls) / 25 (plain)."
    ))]
    Add(Box<AccountAddArgs>),
    /// Test an account's connection and credentials.
    #[command(after_help = "Example:\n  mailsync account test work")]
    Test {
        /// Account name.
        name: String,
    },
    /// List accounts.
    #[command(after_help = "Examples:\n  mailsync account list\n  mailsync account list --json")]
    List(JsonArg),
    /// Remove an account and all of its local data (nothing is deleted on the server).
    #[command(after_help = "Example:\n  mailsync account remove work")]
    Remove {
        /// Account name.
        name: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SecurityArg {
    /// Implicit TLS.
    Tls,
    /// STARTTLS (required).
    Starttls,
    /// No encryption (loopback or --allow-plaintext only).
    Plain,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("server").required(true).args(["imap", "jmap"])))]
#[command(group(clap::ArgGroup::new("password").required(true).args(["password_env", "password_cmd"])))]
pub struct AccountAddArgs {
    /// Local name of the account.
    pub name: String,
    /// IMAP server, HOST or HOST:PORT.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub imap: Option<String>,
    /// JMAP server: a session URL, a /.well-known/jmap URL, a URL without a path, a host or an
    /// email address (discovered by DNS SRV `_jmap._tcp`, then https://HOST/.well-known/jmap).
    #[arg(long, value_name = "URL|HOST|EMAIL", conflicts_with_all = ["smtp", "security", "smtp_security"])]
    pub jmap: Option<String>,
    /// IMAP connection security [default: tls].
    #[arg(long, value_enum, value_name = "tls|starttls|plain")]
    pub security: Option<SecurityArg>,
    /// SMTP server for sending (IMAP accounts), HOST or HOST:PORT.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub smtp: Option<String>,
    /// SMTP connection security [default: the IMAP security].
    #[arg(long, value_enum)]
    pub smtp_security: Option<SecurityArg>,
    /// Extra CA certificate (PEM) to trust.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Login name.
    #[arg(long)]
    pub user: String,
    /// Environment variable holding the password.
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,
    /// Command printing the password on its first line.
    #[arg(long, value_name = "CMD")]
    pub password_cmd: Option<String>,
    /// Address to send from (default, JMAP: the server's identity for USER; IMAP: USER if it
    /// contains @, else USER@server-host).
    #[arg(long, value_name = "ADDR")]
    pub email: Option<String>,
    /// Display name for sent mail.
    #[arg(long)]
    pub display_name: Option<String>,
    /// Bodies downloaded during sync: none, all or NNkb (e.g. 64kb) (others are fetched on demand).
    #[arg(long, default_value = "64kb", value_name = "none|all|<N>kb")]
    pub bodies: String,
    /// Allow plaintext (plain security, http://) to a non-loopback host.
    #[arg(long)]
    pub allow_plaintext: bool,
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// Machine-readable output: one JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Only these accounts (repeatable; default: all).
    #[arg(long = "account", value_name = "NAME")]
    pub accounts: Vec<String>,
    /// One full cycle per account, then exit.
    #[arg(long)]
    pub once: bool,
    /// Body download policy (none, all, NNkb), stored on the selected accounts.
    #[arg(long, value_name = "none|all|<N>kb")]
    pub bodies: Option<String>,
    /// Polling interval for servers without push, e.g. 1s, 500ms, 2m.
    #[arg(
        long,
        env = "MAILSYNC_POLL_INTERVAL",
        value_name = "DURATION",
        hide = true
    )]
    pub poll_interval: Option<String>,
}

#[derive(Debug, Args)]
pub struct MailboxesArgs {
    /// Only this account.
    #[arg(long)]
    pub account: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EmailsArgs {
    /// Only this account.
    #[arg(long)]
    pub account: Option<String>,
    /// Only this mailbox (by name).
    #[arg(long, conflicts_with = "role")]
    pub mailbox: Option<String>,
    /// Only mailboxes with this role (inbox, sent, drafts, trash, junk, archive).
    #[arg(long)]
    pub role: Option<String>,
    /// Only the messages of this conversation (an id from `mailsync threads`).
    #[arg(long)]
    pub thread: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    pub limit: u64,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ThreadsArgs {
    /// Only this account.
    #[arg(long)]
    pub account: Option<String>,
    /// Only conversations with a message in this mailbox (by name).
    #[arg(long, conflicts_with = "role")]
    pub mailbox: Option<String>,
    /// Only conversations with a message in a mailbox with this role.
    #[arg(long)]
    pub role: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    pub limit: u64,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The query (quote it for the shell when it has spaces or quotes).
    #[arg(required = true, num_args = 1..)]
    pub query: Vec<String>,
    /// Only this account.
    #[arg(long)]
    pub account: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    pub limit: u64,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Email id (from `mailsync emails`).
    pub id: i64,
    /// Print the HTML part instead of the text.
    #[arg(long)]
    pub html: bool,
    /// JSON with headers, text, html and attachment metadata.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["seen", "unseen", "flagged", "unflagged"])))]
pub struct FlagArgs {
    /// Email ids.
    #[arg(required = true)]
    pub ids: Vec<i64>,
    /// Mark read.
    #[arg(long)]
    pub seen: bool,
    /// Mark unread.
    #[arg(long)]
    pub unseen: bool,
    /// Flag.
    #[arg(long)]
    pub flagged: bool,
    /// Unflag.
    #[arg(long)]
    pub unflagged: bool,
    /// Sync the account right away.
    #[arg(long)]
    pub now: bool,
}

#[derive(Debug, Args)]
pub struct MoveArgs {
    /// Email ids.
    #[arg(required = true)]
    pub ids: Vec<i64>,
    /// Target mailbox: a name, or a role (inbox, archive, trash, ...).
    #[arg(long, value_name = "MAILBOX_OR_ROLE")]
    pub to: String,
    /// Sync the account right away.
    #[arg(long)]
    pub now: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Email ids.
    #[arg(required = true)]
    pub ids: Vec<i64>,
    /// Sync the account right away.
    #[arg(long)]
    pub now: bool,
}

#[derive(Debug, Args)]
pub struct UndoArgs {
    /// The account (default: the one with the latest queued change).
    #[arg(long)]
    pub account: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("body_src").required(true).args(["body", "body_file"])))]
pub struct SendArgs {
    /// The sending account.
    #[arg(long)]
    pub account: String,
    /// Recipients.
    #[arg(long, required = true, value_name = "ADDR")]
    pub to: Vec<String>,
    /// Carbon-copy recipients.
    #[arg(long, value_name = "ADDR")]
    pub cc: Vec<String>,
    /// Blind carbon-copy recipients (never in the headers).
    #[arg(long, value_name = "ADDR")]
    pub bcc: Vec<String>,
    /// Subject.
    #[arg(long)]
    pub subject: String,
    /// Plain-text body.
    #[arg(long)]
    pub body: Option<String>,
    /// Read the plain-text body from a file (- for stdin).
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// An HTML alternative from a file.
    #[arg(long, value_name = "FILE")]
    pub html_file: Option<PathBuf>,
    /// Attach a file (repeatable).
    #[arg(long, value_name = "FILE")]
    pub attach: Vec<PathBuf>,
    /// Only queue it; it goes out at the next sync.
    #[arg(long)]
    pub queue_only: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct FailedArgs {
    #[command(subcommand)]
    pub action: Option<FailedCmd>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum FailedCmd {
    /// Queue a failed change again.
    #[command(after_help = "Example:\n  mailsync failed retry 3")]
    Retry {
        /// Failed-change id (from `mailsync failed`).
        id: i64,
    },
    /// Forget a failed change (its local effect was already reverted).
    #[command(after_help = "Example:\n  mailsync failed dismiss 3")]
    Dismiss {
        /// Failed-change id (from `mailsync failed`).
        id: i64,
    },
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Only this account.
    #[arg(long)]
    pub account: Option<String>,
    /// At most this many rows.
    #[arg(long, default_value_t = 20)]
    pub limit: u64,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}
