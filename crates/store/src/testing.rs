//! Throwaway databases for tests (feature `testing`): a SQLite file in a temp dir, or a fresh
//! PostgreSQL database created on the server named by `MAILSYNC_PG_URL` and dropped afterwards.

use sea_orm::{ConnectionTrait, Database};

use crate::{Store, StoreError};

/// The PostgreSQL server used by tests.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A temporary database; call [`TempDb::cleanup`] at the end (PostgreSQL drops its database).
#[derive(Debug)]
pub struct TempDb {
    /// The store, migrated to the latest version unless created with `_unmigrated`.
    pub store: Store,
    /// The URL it was opened with.
    pub url: String,
    pg: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TempDb {
    /// A fresh SQLite file, migrated.
    pub async fn sqlite() -> Result<Self, StoreError> {
        let db = Self::sqlite_unmigrated().await?;
        db.store.migrate().await?;
        Ok(db)
    }

    /// A fresh SQLite file with no schema.
    pub async fn sqlite_unmigrated() -> Result<Self, StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::BadUrl {
            url: format!("temp dir: {e}"),
        })?;
        let url = format!("sqlite://{}/mail.db?mode=rwc", dir.path().display());
        let store = Store::connect(&url).await?;
        Ok(Self {
            store,
            url,
            pg: None,
            _dir: Some(dir),
        })
    }

    /// A fresh PostgreSQL database, migrated.
    pub async fn postgres() -> Result<Self, StoreError> {
        let db = Self::postgres_unmigrated().await?;
        db.store.migrate().await?;
        Ok(db)
    }

    /// A fresh PostgreSQL database with no schema, on the server of `MAILSYNC_PG_URL`
    /// (default [`DEFAULT_PG_URL`]).
    pub async fn postgres_unmigrated() -> Result<Self, StoreError> {
        let admin_url =
            std::env::var("MAILSYNC_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
        let name = format!(
            "mailsync_test_{}_{}",
            std::process::id(),
            chrono::Utc::now()
                .timestamp_nanos_opt()
                .unwrap_or_default()
                .unsigned_abs()
        );
        let admin = Database::connect(&admin_url)
            .await
            .map_err(|source| StoreError::Open {
                url: crate::redact_url(&admin_url),
                source,
            })?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await?;
        admin.close().await?;
        let base = match admin_url.rfind('/') {
            Some(i) if i > "postgres://".len() => &admin_url[..i],
            _ => admin_url.as_str(),
        };
        let url = format!("{base}/{name}");
        let store = Store::connect(&url).await?;
        Ok(Self {
            store,
            url,
            pg: Some((admin_url, name)),
            _dir: None,
        })
    }

    /// Closes the store and drops the PostgreSQL database (SQLite files go with the temp dir).
    pub async fn cleanup(self) -> Result<(), StoreError> {
        self.store.close().await?;
        if let Some((admin_url, name)) = self.pg {
            let admin = Database::connect(&admin_url)
                .await
                .map_err(|source| StoreError::Open {
                    url: crate::redact_url(&admin_url),
                    source,
                })?;
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await?;
            admin.close().await?;
        }
        Ok(())
    }
}

/// An IMAP account named `name` with no endpoints (for tests that write mail straight into the
/// store).
pub async fn account<C: ConnectionTrait>(
    c: &C,
    name: &str,
    body_policy: crate::BodyPolicy,
) -> Result<crate::accounts::Account, StoreError> {
    crate::accounts::create(
        c,
        crate::accounts::NewAccount {
            name: name.into(),
            kind: crate::AccountKind::Imap,
            email: format!("{name}@example.test"),
            display_name: None,
            username: name.into(),
            secret_ref: crate::SecretRef::Env("MAILSYNC_TEST_PW".into()),
            imap: None,
            smtp: None,
            jmap_session_url: None,
            ca_file: None,
            allow_plaintext: false,
            body_policy,
        },
    )
    .await
}
