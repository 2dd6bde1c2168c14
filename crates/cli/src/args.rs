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
        "  MAILSYNC_CACHE_DIR      where saved attachments are cached (default: <db>.parts/)\n",
        "  RUST_LOG                tracing filter (overrides -v)\n",
        "  MAILSYNC_POLL_INTERVAL  how often `sync` polls servers without push (default 30s)\n",
        "  MAILSYNC_CACHE_DIR      where downloaded attachments are cached (default: beside the\n",
        "                          SQLite database, DB.parts/; else ~/.cache/mailsync/parts)\n",
        "  MAILSYNC_LEASE_TTL      how long an account stays locked by a killed process (default 20s)\n",
        "  MAILSYNC_HOST_CONNECTIONS  `sync`: IMAP connections per server host in all (default: no cap)\n",
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
        "or --poll-interval to change that. IMAP without NOTIFY: IDLE on INBOX and, within\n",
        "--imap-connections (default 3, counting sync and downloads), on the busiest other\n",
        "mailboxes; the rest are looked at every --status-interval (default 3s).\n",
        "\n",
        "With --once the exit code is 0 when every account synced, else that of the first failure\n",
        "(3 not found, 4 needs the user, 5 unreachable, 1 other); the daemon exits 0 after a clean\n",
        "shutdown."
    ))]
    Sync(SyncArgs),
    /// Sync like the daemon and print what changed, with ids, as it happens (--json: NDJSON).
    #[command(after_help = concat!(
        "Each event is one line; with --json one object with a `type` field:\n",
        "  cycle_started, cycle_finished, cycle_failed, emails_created, emails_updated,\n",
        "  emails_removed (each with `emails`: [{id, mailboxes}]), mailboxes_changed,\n",
        "  change (a queued change's `fate`: queued, in_flight, accepted, retrying, done,\n",
        "  evicted), lagged (events were dropped: reload your view), lease_held.\n",
        "Ids are local ids (`mailsync emails --json`). Runs the sync workers itself: use it in\n",
        "place of `mailsync sync`, not beside it.\n\n",
        "Examples:\n  mailsync watch --json\n  mailsync watch --account work --json | my-app"
    ))]
    Watch(WatchArgs),
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
    /// Search the local database (subject, addresses, cached bodies), best match first; with
    /// --server also each account's server (bodies not cached, mail not synced yet).
    #[command(after_help = concat!(
        "Examples:\n",
        "  mailsync search budget\n",
        "  mailsync search '\"next quarter\" from:alice is:unread'\n",
        "  mailsync search 'subject:invoice in:archive after:2026-01-01 before:2026-02-01' --json\n",
        "  mailsync search --server --account work 'quarterly forecast'\n",
        "\n",
        "Syntax: words and \"quoted phrases\" (all must match); from:, to: (To/Cc/Bcc), subject:;\n",
        "in:MAILBOX (name or role); is:unread, is:read, is:flagged, is:unflagged;\n",
        "has:attachment; before:YYYY-MM-DD, after:YYYY-MM-DD (arrival, UTC; after: includes the\n",
        "day). Bodies are searched locally only where cached (see sync --bodies). A query that\n",
        "does not parse is a usage error (exit code 2).\n",
        "--server also asks the server (IMAP UID SEARCH in every mailbox or the in: one; JMAP\n",
        "Email/query with snippets). Results are merged, one per email; origin says where each\n",
        "was found: local, server or both. Local hits come first (best first), then server-only\n",
        "ones (newest first). A server hit the database does not hold yet makes the command sync\n",
        "that account once (or ask the running daemon to), so it gets an id you can `show`;\n",
        "until then its id is empty and `remote` names it on the server. A server that cannot be\n",
        "searched is reported on stderr and the exit code says why; the other results stand.\n",
        "--json prints one object per line: id, account, subject, from, date, mailboxes,\n",
        "snippet, score, origin, remote."
    ))]
    Search(SearchArgs),
    /// Show an email's body (fetched from the server on first use, then cached).
    #[command(
        after_help = "Examples:\n  mailsync show 42\n  mailsync show 42 --html\n  mailsync show 42 --json   (headers, text, html and attachment metadata)"
    )]
    Show(ShowArgs),
    /// List an email's attachments or save one to a file (downloaded on first use, then cached).
    #[command(
        subcommand,
        after_help = concat!(
            "Examples:\n",
            "  mailsync attachment list 42\n",
            "  mailsync attachment save 42 2 -o report.pdf\n",
            "\n",
            "Downloaded parts are cached as files in $MAILSYNC_CACHE_DIR, else beside the SQLite\n",
            "database (<db>.parts/), else in $XDG_CACHE_HOME/mailsync/parts."
        )
    )]
    Attachment(AttachmentCmd),
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
        "  mailsync send --draft 57               send a saved draft (it leaves Drafts)\n",
        "\n",
        "The sender is the account's address (and display name). When the account cannot be\n",
        "reached the message stays queued and goes out at the next sync; the exit code says why\n",
        "it was not sent (5 unreachable, 4 needs the user). --queue-only never connects."
    ))]
    Send(SendArgs),
    /// Save, list and delete drafts (kept in the account's Drafts mailbox; works offline).
    #[command(
        subcommand,
        after_help = concat!(
            "Examples:\n",
            "  mailsync draft save --account work --to bob@example.org --subject Plan --body 'First lines'\n",
            "  mailsync draft save --account work --draft 57 --body-file plan.txt   (update draft 57)\n",
            "  mailsync draft list --json\n",
            "  mailsync draft delete 57\n",
            "  mailsync send --draft 57\n",
            "\n",
            "Saves are applied locally at once and uploaded at the next sync; several saves before\n",
            "it are one upload of the latest version. On the server an update replaces the old\n",
            "copy (the new one is stored first, then the old one removed)."
        )
    )]
    Draft(DraftCmd),
    /// Create, rename/move, delete, subscribe or unsubscribe a mailbox on the server (online).
    #[command(
        subcommand,
        after_help = concat!(
            "Examples:\n",
            "  mailsync mailbox create --account work Projects\n",
            "  mailsync mailbox create --account work 2024 --parent Projects --json\n",
            "  mailsync mailbox create --account work Archive2 --role archive\n",
            "  mailsync mailbox rename --account work Projects/2024 Done --parent Archive\n",
            "  mailsync mailbox subscribe --account work Done\n",
            "  mailsync mailbox delete --account work Done      (its emails go with it)\n",
            "\n",
            "Mailboxes are named by their full path as `mailsync mailboxes` shows it. The change is\n",
            "applied to the database at once, queued, and sent to the server right away (or by the\n",
            "running daemon); the line printed ends with `done`, or `queued` when the server is\n",
            "unreachable: it is sent at the next sync (exit 0). A change the server refuses (a name\n",
            "that exists, a role it cannot give) exits 1 with its reason, is listed by `mailsync\n",
            "failed`, and the database gets the server's state back. --role needs a server with\n",
            "CREATE-SPECIAL-USE (IMAP) or JMAP."
        )
    )]
    Mailbox(MailboxCmd),
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
        "OAuth 2 (the refresh token comes from a variable or a command; access tokens are\n",
        "obtained, cached in memory and refreshed by mailsync, never stored). Google:\n",
        "  mailsync account add gmail --oauth2 --imap imap.gmail.com --smtp smtp.gmail.com \\\n",
        "      --user me@gmail.com --oauth-token-url https://oauth2.googleapis.com/token \\\n",
        "      --oauth-client-id 1234.apps.googleusercontent.com \\\n",
        "      --oauth-client-secret-cmd 'pass show google/client-secret' \\\n",
        "      --oauth-scope https://mail.google.com/ \\\n",
        "      --oauth-refresh-cmd 'pass show google/refresh-token' \\\n",
        "      --oauth-refresh-store-cmd 'pass insert -m -f google/refresh-token'\n",
        "Microsoft 365 / Outlook.com:\n",
        "  mailsync account add work --oauth2 --imap outlook.office365.com \\\n",
        "      --smtp smtp.office365.com --smtp-security starttls --user me@contoso.com \\\n",
        "      --oauth-token-url https://login.microsoftonline.com/common/oauth2/v2.0/token \\\n",
        "      --oauth-client-id 00000000-0000-0000-0000-000000000000 \\\n",
        "      --oauth-scope https://outlook.office.com/IMAP.AccessAsUser.All \\\n",
        "      --oauth-scope https://outlook.office.com/SMTP.Send --oauth-scope offline_access \\\n",
        "      --oauth-refresh-env WORK_REFRESH_TOKEN\n",
        "IMAP uses OAUTHBEARER where the server offers it, else XOAUTH2; SMTP XOAUTH2; JMAP\n",
        "`Authorization: Bearer`. A refresh token the provider rotates is piped to\n",
        "--oauth-refresh-store-cmd (else a warning says to store it).\n",
        "\n",
        "The database keeps how to get the password (the variable name or the command), never\n",
        "the password. `plain` security and http:// URLs are refused unless the host is loopback\n",
        "or --allow-plaintext is given. Default ports: IMAP 993 (tls) / 143; SMTP 465 (tls) /\n",
        "587 (starttls) / 25 (plain)."
    ))]
    Add(Box<AccountAddArgs>),
    /// Change an account's servers, security, login, password source or body policy, keeping
    /// its local data (the new settings are tested first; nothing changes when that fails).
    #[command(after_help = concat!(
        "Examples:\n",
        "  mailsync account edit work --password-cmd 'pass show mail/work-new'\n",
        "  mailsync account edit work --bodies all\n",
        "  mailsync account edit work --imap imap2.example.org --security starttls\n",
        "  mailsync account edit home --jmap https://jmap.example.org/.well-known/jmap\n",
        "\n",
        "Only the flags given change. --imap/--smtp HOST without a port take the default port of\n",
        "the (new) security; --security alone keeps host and port. The name and the protocol\n",
        "(IMAP or JMAP) cannot change: remove and add the account for that."
    ))]
    Edit(Box<AccountEditArgs>),
    /// Test an account's connection and credentials (prints the mechanisms used).
    #[command(
        after_help = "Example:\n  mailsync account test work\n  (prints e.g. `account \"work\": ok (IMAP OAUTHBEARER, SMTP XOAUTH2)`)"
    )]
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
#[command(group(clap::ArgGroup::new("password").required(true).args(["password_env", "password_cmd", "oauth_refresh_env", "oauth_refresh_cmd"])))]
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
    /// Log in with OAuth 2 (needs --oauth-token-url, --oauth-client-id and a refresh token).
    #[arg(long, requires_all = ["oauth_token_url", "oauth_client_id"], conflicts_with_all = ["password_env", "password_cmd"])]
    pub oauth2: bool,
    /// OAuth 2: the provider's token endpoint.
    #[arg(long, value_name = "URL", requires = "oauth2")]
    pub oauth_token_url: Option<String>,
    /// OAuth 2: the client id registered with the provider.
    #[arg(long, value_name = "ID", requires = "oauth2")]
    pub oauth_client_id: Option<String>,
    /// OAuth 2: environment variable holding the client secret (if the provider needs one).
    #[arg(
        long,
        value_name = "VAR",
        requires = "oauth2",
        conflicts_with = "oauth_client_secret_cmd"
    )]
    pub oauth_client_secret_env: Option<String>,
    /// OAuth 2: command printing the client secret.
    #[arg(long, value_name = "CMD", requires = "oauth2")]
    pub oauth_client_secret_cmd: Option<String>,
    /// OAuth 2: a scope to ask for (repeatable; default: those of the refresh token).
    #[arg(long = "oauth-scope", value_name = "SCOPE", requires = "oauth2")]
    pub oauth_scopes: Vec<String>,
    /// OAuth 2: environment variable holding the refresh token.
    #[arg(long, value_name = "VAR", requires = "oauth2")]
    pub oauth_refresh_env: Option<String>,
    /// OAuth 2: command printing the refresh token on its first line.
    #[arg(long, value_name = "CMD", requires = "oauth2")]
    pub oauth_refresh_cmd: Option<String>,
    /// OAuth 2: command that stores a rotated refresh token (given on its standard input).
    #[arg(long, value_name = "CMD", requires = "oauth2")]
    pub oauth_refresh_store_cmd: Option<String>,
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
#[command(group(clap::ArgGroup::new("password").args(["password_env", "password_cmd"])))]
pub struct AccountEditArgs {
    /// Local name of the account.
    pub name: String,
    /// New IMAP server, HOST or HOST:PORT (IMAP accounts).
    #[arg(long, value_name = "HOST[:PORT]", conflicts_with = "jmap")]
    pub imap: Option<String>,
    /// New JMAP server (JMAP accounts): a URL, a host or an email address, as for `add`.
    #[arg(long, value_name = "URL|HOST|EMAIL", conflicts_with_all = ["smtp", "security", "smtp_security"])]
    pub jmap: Option<String>,
    /// New IMAP connection security.
    #[arg(long, value_enum, value_name = "tls|starttls|plain")]
    pub security: Option<SecurityArg>,
    /// New SMTP server (IMAP accounts), HOST or HOST:PORT.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub smtp: Option<String>,
    /// New SMTP connection security.
    #[arg(long, value_enum)]
    pub smtp_security: Option<SecurityArg>,
    /// Extra CA certificate (PEM) to trust.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// New login name.
    #[arg(long)]
    pub user: Option<String>,
    /// Environment variable holding the password.
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,
    /// Command printing the password on its first line.
    #[arg(long, value_name = "CMD")]
    pub password_cmd: Option<String>,
    /// New address to send from.
    #[arg(long, value_name = "ADDR")]
    pub email: Option<String>,
    /// New display name for sent mail.
    #[arg(long)]
    pub display_name: Option<String>,
    /// Bodies downloaded during sync: none, all or NNkb.
    #[arg(long, value_name = "none|all|<N>kb")]
    pub bodies: Option<String>,
    /// Allow plaintext (plain security, http://) to a non-loopback host.
    #[arg(long)]
    pub allow_plaintext: bool,
}

#[derive(Debug, Subcommand)]
pub enum AttachmentCmd {
    /// List an email's attachments: part, file name, type, size.
    #[command(after_help = concat!(
        "Examples:\n",
        "  mailsync attachment list 42\n",
        "  mailsync attachment list 42 --json\n",
        "\n",
        "--json prints one object per line: part, file_name, mime_type, size, disposition,\n",
        "content_id, blob_id. Sizes are as the server reports them (IMAP: encoded size)."
    ))]
    List {
        /// Email id (from `mailsync emails`).
        id: i64,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Save one attachment, decoded, to a file (written whole or not at all).
    #[command(after_help = concat!(
        "Examples:\n",
        "  mailsync attachment save 42 2                 to its own file name, here\n",
        "  mailsync attachment save 42 2 -o /tmp/a.pdf\n",
        "\n",
        "PART is the part column of `attachment list` (an IMAP part number such as 2 or 1.3, or\n",
        "a JMAP part or blob id). Large attachments are streamed, never held in memory."
    ))]
    Save {
        /// Email id (from `mailsync emails`).
        id: i64,
        /// Part (from `mailsync attachment list`).
        part: String,
        /// Output file (default: the attachment's file name in the current directory).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
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
    #[command(flatten)]
    pub poll: PollArg,
}

#[derive(Debug, Args)]
pub struct PollArg {
    /// Polling interval for servers without push (and, without IMAP NOTIFY, how often
    /// mailboxes other than INBOX are looked at), e.g. 1s, 500ms, 2m.
    #[arg(
        long,
        env = "MAILSYNC_POLL_INTERVAL",
        value_name = "DURATION",
        hide = true
    )]
    pub poll_interval: Option<String>,
    /// IMAP connections per account in all (sync, IDLE, on-demand downloads; at least 2).
    /// Without IMAP NOTIFY, those beyond 2 IDLE on the busiest mailboxes besides INBOX.
    #[arg(
        long,
        env = "MAILSYNC_IMAP_CONNECTIONS",
        value_name = "N",
        default_value_t = 3
    )]
    pub imap_connections: usize,
    /// At most N IMAP connections per server host for the whole daemon (sync, IDLE/NOTIFY,
    /// on-demand downloads of every account), to stay under a provider's per-IP limit. With
    /// fewer than there are accounts, accounts take turns instead of each keeping its push
    /// connection. Default: no cap.
    #[arg(long, env = "MAILSYNC_HOST_CONNECTIONS", value_name = "N")]
    pub host_connections: Option<usize>,
    /// Without IMAP NOTIFY, how often the mailboxes without an IDLE of their own are looked
    /// at (one LIST-STATUS or STATUS round), e.g. 3s, 500ms.
    #[arg(long, env = "MAILSYNC_STATUS_INTERVAL", value_name = "DURATION")]
    pub status_interval: Option<String>,
    /// IMAP capabilities to ignore although the server offers them, comma-separated (e.g.
    /// NOTIFY): an escape hatch for a broken server extension; benches use it.
    #[arg(
        long,
        env = "MAILSYNC_IMAP_IGNORE",
        value_name = "CAPS",
        value_delimiter = ',',
        hide = true
    )]
    pub imap_ignore: Vec<String>,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only these accounts (repeatable; default: all).
    #[arg(long = "account", value_name = "NAME")]
    pub accounts: Vec<String>,
    /// One JSON object per line (NDJSON).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub poll: PollArg,
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
    /// Also search on the server(s): bodies not cached, mail not synced yet.
    #[arg(long)]
    pub server: bool,
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
#[command(group(clap::ArgGroup::new("body_src").args(["body", "body_file"])))]
pub struct SendArgs {
    /// The sending account (with --draft: the draft's account).
    #[arg(long, required_unless_present = "draft")]
    pub account: Option<String>,
    /// Send this saved draft (its id from `mailsync draft list`) instead of composing here.
    #[arg(long, value_name = "ID", conflicts_with_all = ["to", "cc", "bcc", "subject", "body", "body_file", "html_file", "attach"])]
    pub draft: Option<i64>,
    /// Recipients.
    #[arg(long, required_unless_present = "draft", value_name = "ADDR")]
    pub to: Vec<String>,
    /// Carbon-copy recipients.
    #[arg(long, value_name = "ADDR")]
    pub cc: Vec<String>,
    /// Blind carbon-copy recipients (never in the headers).
    #[arg(long, value_name = "ADDR")]
    pub bcc: Vec<String>,
    /// Subject.
    #[arg(long, required_unless_present = "draft")]
    pub subject: Option<String>,
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

#[derive(Debug, Subcommand)]
pub enum DraftCmd {
    /// Save a new draft, or a new version of one (--draft); prints its id.
    #[command(after_help = concat!(
        "Examples:\n",
        "  mailsync draft save --account work --to bob@example.org --subject Plan --body 'Hi'\n",
        "  mailsync draft save --account work --draft 57 --subject 'Plan v2' --json\n",
        "\n",
        "With --draft, fields not given keep the draft's current value. --json prints {\"id\": N}."
    ))]
    Save(DraftSaveArgs),
    /// List drafts (id, account, subject, recipients).
    #[command(
        after_help = "Examples:\n  mailsync draft list\n  mailsync draft list --account work --json"
    )]
    List(DraftListArgs),
    /// Delete a draft (also from the server, at the next sync).
    #[command(after_help = "Examples:\n  mailsync draft delete 57")]
    Delete {
        /// The draft's id (from `mailsync draft list`).
        id: i64,
    },
}

#[derive(Debug, Args)]
pub struct DraftSaveArgs {
    /// The account whose Drafts mailbox keeps it.
    #[arg(long)]
    pub account: String,
    /// Update this draft instead of creating one.
    #[arg(long, value_name = "ID")]
    pub draft: Option<i64>,
    /// Recipients.
    #[arg(long, value_name = "ADDR")]
    pub to: Vec<String>,
    /// Carbon-copy recipients.
    #[arg(long, value_name = "ADDR")]
    pub cc: Vec<String>,
    /// Blind carbon-copy recipients.
    #[arg(long, value_name = "ADDR")]
    pub bcc: Vec<String>,
    /// Subject.
    #[arg(long)]
    pub subject: Option<String>,
    /// Plain-text body.
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Read the plain-text body from a file (- for stdin).
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// Attach a file (repeatable; replaces the draft's attachments).
    #[arg(long, value_name = "FILE")]
    pub attach: Vec<PathBuf>,
    /// Print {"id": N}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DraftListArgs {
    /// Only this account.
    #[arg(long)]
    pub account: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
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

#[derive(Debug, Subcommand)]
pub enum MailboxCmd {
    /// Create NAME (one level) at the top level or under --parent.
    #[command(
        after_help = "Examples:\n  mailsync mailbox create --account work Projects\n  mailsync mailbox create --account work 2024 --parent Projects --role archive --json"
    )]
    Create {
        #[command(flatten)]
        target: MailboxTarget,
        /// The parent mailbox (full path).
        #[arg(long, value_name = "MAILBOX")]
        parent: Option<String>,
        /// A role: inbox, sent, drafts, trash, junk, archive.
        #[arg(long)]
        role: Option<String>,
    },
    /// Rename NAME to NEW_NAME (one level), at the top level or under --parent.
    #[command(
        after_help = "Examples:\n  mailsync mailbox rename --account work Projects Done\n  mailsync mailbox rename --account work Projects/2024 2024 --parent Archive"
    )]
    Rename {
        #[command(flatten)]
        target: MailboxTarget,
        /// The new name (last level).
        new_name: String,
        /// The new parent (full path); the top level when absent.
        #[arg(long, value_name = "MAILBOX")]
        parent: Option<String>,
    },
    /// Delete NAME and the emails in it.
    #[command(after_help = "Examples:\n  mailsync mailbox delete --account work Done")]
    Delete {
        #[command(flatten)]
        target: MailboxTarget,
    },
    /// Subscribe to NAME.
    #[command(after_help = "Examples:\n  mailsync mailbox subscribe --account work Done")]
    Subscribe {
        #[command(flatten)]
        target: MailboxTarget,
    },
    /// Unsubscribe from NAME.
    #[command(after_help = "Examples:\n  mailsync mailbox unsubscribe --account work Done")]
    Unsubscribe {
        #[command(flatten)]
        target: MailboxTarget,
    },
}

#[derive(Debug, Args)]
pub struct MailboxTarget {
    /// The account.
    #[arg(long)]
    pub account: String,
    /// The mailbox (full path; for create, the new mailbox's name).
    pub name: String,
    /// Print the resulting mailbox as JSON.
    #[arg(long)]
    pub json: bool,
}
