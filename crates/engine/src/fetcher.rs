//! On-demand downloads (bodies, attachment parts) over one connection per account, kept open
//! between calls instead of a login per call; and the parts cache, files under one directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mailsync_imap_sync::{self as imap, Connection};
use mailsync_jmap_client::Client;
use mailsync_store::accounts::Account;
use mailsync_store::emails::Attachment;
use mailsync_store::{AccountId, AccountKind, EmailId, Store, emails};
use tokio::io::AsyncWriteExt;

use crate::error::EngineError;
use crate::hostcap::{Capped, HostCap};
use crate::search::{ServerHit, ServerSearch};

/// An open connection of one account.
enum Conn {
    Imap(Box<Capped<Connection>>),
    Jmap(Box<Client>),
}

/// One account's on-demand connection, with the settings it was opened with (an edited
/// account gets a new one).
#[derive(Default)]
struct Slot {
    opened_with: Option<Account>,
    conn: Option<Conn>,
}

/// Where a saved part came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SavedPart {
    /// The attachment's metadata.
    pub attachment: Attachment,
    /// Decoded bytes written.
    pub bytes: u64,
    /// True when it came from the parts cache (no download).
    pub cached: bool,
}

/// The on-demand connections of an engine, one per account, and its parts cache.
pub(crate) struct Fetcher {
    slots: Mutex<HashMap<AccountId, Arc<tokio::sync::Mutex<Slot>>>>,
    parts_dir: Mutex<PathBuf>,
    connects: AtomicU64,
    cap: Option<Arc<HostCap>>,
}

/// Errors after which the connection is still good: the object is missing, or the failure
/// was local (the database, the output file).
fn keeps_connection(e: &EngineError) -> bool {
    matches!(
        e,
        EngineError::Imap(
            imap::Error::NotFound { .. } | imap::Error::Write(_) | imap::Error::Store(_)
        ) | EngineError::Store(_)
            | EngineError::Output { .. }
    )
}

/// A file-name-safe form of a part or blob id.
fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Drops the connection after an error that may have left it unusable, or when another
/// connection of its host waits for a place under the host cap (the next call reconnects).
fn settle<T>(slot: &mut Slot, res: &Result<T, EngineError>) {
    if let Err(e) = res
        && !keeps_connection(e)
    {
        slot.conn = None;
    }
    if let Some(Conn::Imap(c)) = &slot.conn
        && c.is_contended()
    {
        slot.conn = None;
    }
}

fn no_conn() -> EngineError {
    EngineError::Config("no on-demand connection".into())
}

fn output_err(path: &Path, source: std::io::Error) -> EngineError {
    EngineError::Output {
        path: path.display().to_string(),
        source,
    }
}

impl Fetcher {
    pub(crate) fn new() -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            parts_dir: Mutex::new(std::env::temp_dir().join("mailsync-parts")),
            connects: AtomicU64::new(0),
            cap: None,
        }
    }

    /// Caps the on-demand IMAP connections with the daemon's per-host cap.
    pub(crate) fn with_host_cap(mut self, cap: Option<Arc<HostCap>>) -> Self {
        self.cap = cap;
        self
    }

    pub(crate) fn set_parts_dir(&self, dir: PathBuf) {
        *self.parts_dir.lock().unwrap_or_else(|p| p.into_inner()) = dir;
    }

    pub(crate) fn parts_dir(&self) -> PathBuf {
        self.parts_dir
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Connections opened so far (a measure of reuse).
    pub(crate) fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// Drops an account's connection (settings changed, account removed).
    pub(crate) fn forget(&self, id: AccountId) {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    fn slot(&self, id: AccountId) -> Arc<tokio::sync::Mutex<Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_default()
            .clone()
    }

    /// The account's connection, opened when there is none (or the settings changed); held
    /// exclusively, so one operation at a time runs per account. Pass the guard and the
    /// operation's result to [`settle`].
    async fn open(
        &self,
        account: &Account,
    ) -> Result<tokio::sync::OwnedMutexGuard<Slot>, EngineError> {
        let mut slot = self.slot(account.id).lock_owned().await;
        let usable = slot.opened_with.as_ref() == Some(account)
            && match &slot.conn {
                Some(Conn::Imap(c)) => c.is_usable(),
                Some(Conn::Jmap(_)) => true,
                None => false,
            };
        if !usable {
            slot.conn = None;
            let conn = match account.kind {
                AccountKind::Imap => {
                    // Through the driver's login: an OAuth 2 token refused once is
                    // refreshed and tried again, as for the sync connection.
                    Conn::Imap(Box::new(
                        crate::imap_driver::connect_capped(account, &[], self.cap.as_ref()).await?,
                    ))
                }
                AccountKind::Jmap => {
                    Conn::Jmap(Box::new(crate::jmap_driver::connect(account).await?))
                }
            };
            self.connects.fetch_add(1, Ordering::Relaxed);
            slot.conn = Some(conn);
            slot.opened_with = Some(account.clone());
        }
        Ok(slot)
    }

    /// Fetches and caches one email's body in the store.
    pub(crate) async fn fetch_body(
        &self,
        store: &Store,
        account: &Account,
        email: EmailId,
        remote_id: &str,
    ) -> Result<(), EngineError> {
        let mut slot = self.open(account).await?;
        let res = async {
            match slot.conn.as_mut() {
                Some(Conn::Imap(c)) => {
                    imap::fetch_body(c, store, email).await?;
                }
                Some(Conn::Jmap(client)) => {
                    let jacc = client.mail_account_id()?;
                    crate::jmap_sync::fetch_and_store_bodies(
                        client,
                        store,
                        account.id,
                        &jacc,
                        vec![mailsync_jmap_client::EmailId::new(remote_id.to_owned())],
                    )
                    .await?;
                }
                None => return Err(no_conn()),
            }
            Ok(())
        }
        .await;
        settle(&mut slot, &res);
        res
    }

    /// Searches the account's server through its protocol's [`ServerSearch`] (the same
    /// call for IMAP and JMAP) over the on-demand connection.
    pub(crate) async fn server_search(
        &self,
        store: &Store,
        account: &Account,
        q: &mailsync_store::search::Query,
        limit: u64,
    ) -> Result<Vec<ServerHit>, EngineError> {
        let mut slot = self.open(account).await?;
        let res = match slot.conn.as_mut() {
            Some(Conn::Imap(c)) => {
                let s: &mut dyn ServerSearch = &mut ***c;
                s.server_search(store, account, q, limit).await
            }
            Some(Conn::Jmap(c)) => {
                let s: &mut dyn ServerSearch = c.as_mut();
                s.server_search(store, account, q, limit).await
            }
            None => Err(no_conn()),
        };
        settle(&mut slot, &res);
        res
    }

    /// Writes attachment `part` of `email` to `dest`: from the parts cache, else downloaded
    /// (IMAP: the part, decoded; JMAP: its blob) into the cache first. Streams through files
    /// only. `dest` is written whole or not at all (a temporary file renamed into place),
    /// and is checked writable before anything is downloaded.
    pub(crate) async fn save_part(
        &self,
        store: &Store,
        email: EmailId,
        part: &str,
        dest: &Path,
    ) -> Result<SavedPart, EngineError> {
        let row = emails::get(store.conn(), email).await?;
        let attachment = emails::attachments(store.conn(), email)
            .await?
            .into_iter()
            .find(|a| a.part_id.as_deref() == Some(part) || a.blob_id.as_deref() == Some(part))
            .ok_or_else(|| {
                EngineError::Store(mailsync_store::StoreError::NotFound {
                    what: "attachment part (see `attachment list`) of email",
                    key: format!("{email} part {part}"),
                })
            })?;
        let account = mailsync_store::accounts::get(store.conn(), row.account_id).await?;
        // The destination first: an unwritable one fails before any download.
        let file_name = dest
            .file_name()
            .ok_or_else(|| {
                output_err(
                    dest,
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
                )
            })?
            .to_string_lossy()
            .into_owned();
        let tmp_dest = dest.with_file_name(format!(".{file_name}.mailsync-partial"));
        let out = tokio::fs::File::create(&tmp_dest)
            .await
            .map_err(|e| output_err(dest, e))?;
        drop(out);
        let res = self.cached_part(store, &account, email, &attachment).await;
        let (cache, cached) = match res {
            Ok(c) => c,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp_dest).await;
                return Err(e);
            }
        };
        let copied = async {
            let n = tokio::fs::copy(&cache, &tmp_dest).await?;
            tokio::fs::rename(&tmp_dest, dest).await?;
            Ok::<u64, std::io::Error>(n)
        }
        .await;
        match copied {
            Ok(bytes) => Ok(SavedPart {
                attachment,
                bytes,
                cached,
            }),
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp_dest).await;
                Err(output_err(dest, e))
            }
        }
    }

    /// The cache file of a part, downloaded first when missing; and whether it was cached.
    async fn cached_part(
        &self,
        store: &Store,
        account: &Account,
        email: EmailId,
        a: &Attachment,
    ) -> Result<(PathBuf, bool), EngineError> {
        let dir = self.parts_dir().join(account.id.to_string());
        // JMAP blobs are immutable, so their id names the content; an IMAP part is named by
        // the email row (whose identity includes UIDVALIDITY and UID) and its section.
        let name = match (account.kind, &a.blob_id, &a.part_id) {
            (AccountKind::Jmap, Some(b), _) => format!("blob-{}", safe(b)),
            (AccountKind::Imap, _, Some(p)) => format!("{email}-{}", safe(p)),
            _ => {
                return Err(EngineError::Store(mailsync_store::StoreError::NotFound {
                    what: "downloadable part (no blob or part id) of email",
                    key: email.to_string(),
                }));
            }
        };
        let path = dir.join(&name);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok((path, true));
        }
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| output_err(&dir, e))?;
        let tmp = dir.join(format!(".{name}.{}.partial", std::process::id()));
        let res = self.download(store, account, email, a, &tmp).await;
        match res {
            Ok(()) => {
                tokio::fs::rename(&tmp, &path)
                    .await
                    .map_err(|e| output_err(&path, e))?;
                Ok((path, false))
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    /// Downloads a part into `to`.
    async fn download(
        &self,
        store: &Store,
        account: &Account,
        email: EmailId,
        a: &Attachment,
        to: &Path,
    ) -> Result<(), EngineError> {
        let file = tokio::fs::File::create(to)
            .await
            .map_err(|e| output_err(to, e))?;
        let mut file = tokio::io::BufWriter::with_capacity(1 << 16, file);
        let mut slot = self.open(account).await?;
        let res = async {
            match slot.conn.as_mut() {
                Some(Conn::Imap(c)) => {
                    let part = a.part_id.as_deref().unwrap_or_default();
                    imap::fetch_part(c, store, email, part, &mut file).await?;
                }
                Some(Conn::Jmap(client)) => {
                    let jacc = client.mail_account_id()?;
                    let blob =
                        mailsync_jmap_client::BlobId::new(a.blob_id.clone().unwrap_or_default());
                    let name = a.file_name.as_deref().unwrap_or("part");
                    client
                        .download(&jacc, &blob, name, &a.mime_type, &mut file)
                        .await?;
                }
                None => return Err(no_conn()),
            }
            file.flush().await.map_err(|e| output_err(to, e))?;
            file.get_mut()
                .sync_all()
                .await
                .map_err(|e| output_err(to, e))
        }
        .await;
        settle(&mut slot, &res);
        res
    }
}
