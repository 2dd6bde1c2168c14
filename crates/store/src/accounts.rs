//! Accounts: connection settings and a reference to the secret (never the secret itself).

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};

use crate::entity::accounts as acc;
use crate::{AccountId, AccountKind, BodyPolicy, SecretRef, Security, StoreError};

/// A server endpoint (IMAP or SMTP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// How the connection is secured.
    pub security: Security,
}

/// OAuth 2 settings of an account (RFC 6749 refresh-token grant). The refresh token is the
/// account's [`SecretRef`]; like every secret it is only referenced, never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth {
    /// The authorization server's token endpoint.
    pub token_url: String,
    /// The client id registered with the provider.
    pub client_id: String,
    /// Where the client secret comes from, for providers that require one.
    pub client_secret_ref: Option<SecretRef>,
    /// The scopes to ask for (none: the ones the refresh token was granted).
    pub scopes: Vec<String>,
    /// A shell command that receives a rotated refresh token on its standard input.
    pub refresh_store_cmd: Option<String>,
}

/// What is needed to create an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccount {
    /// Unique local name chosen by the user.
    pub name: String,
    /// IMAP or JMAP.
    pub kind: AccountKind,
    /// The account's email address (its identity when sending).
    pub email: String,
    /// Optional display name for outgoing mail.
    pub display_name: Option<String>,
    /// Login name.
    pub username: String,
    /// Where the secret comes from.
    pub secret_ref: SecretRef,
    /// IMAP server (IMAP accounts).
    pub imap: Option<Endpoint>,
    /// SMTP server (IMAP accounts).
    pub smtp: Option<Endpoint>,
    /// JMAP session URL (JMAP accounts).
    pub jmap_session_url: Option<String>,
    /// Extra CA certificate (PEM file) to trust, e.g. for a test server.
    pub ca_file: Option<String>,
    /// Whether the user explicitly allowed plaintext to a non-loopback host.
    pub allow_plaintext: bool,
    /// Which bodies to download during sync.
    pub body_policy: BodyPolicy,
}

/// A stored account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Local id.
    pub id: AccountId,
    /// Unique local name.
    pub name: String,
    /// IMAP or JMAP.
    pub kind: AccountKind,
    /// The account's email address.
    pub email: String,
    /// Display name for outgoing mail.
    pub display_name: Option<String>,
    /// Login name.
    pub username: String,
    /// Where the secret comes from.
    pub secret_ref: SecretRef,
    /// IMAP server.
    pub imap: Option<Endpoint>,
    /// SMTP server.
    pub smtp: Option<Endpoint>,
    /// JMAP session URL.
    pub jmap_session_url: Option<String>,
    /// Extra CA certificate file.
    pub ca_file: Option<String>,
    /// Plaintext explicitly allowed.
    pub allow_plaintext: bool,
    /// Body download policy.
    pub body_policy: BodyPolicy,
    /// OAuth 2 settings: the secret is then a refresh token (None: a password).
    pub oauth: Option<OAuth>,
    /// Creation time.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Last update time.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

fn endpoint(
    host: Option<String>,
    port: Option<i32>,
    security: Option<String>,
) -> Result<Option<Endpoint>, StoreError> {
    match (host, port, security) {
        (Some(host), Some(port), Some(sec)) => Ok(Some(Endpoint {
            host,
            port: u16::try_from(port).map_err(|_| StoreError::InvalidValue {
                what: "port",
                value: port.to_string(),
            })?,
            security: sec.parse()?,
        })),
        _ => Ok(None),
    }
}

fn oauth_of(m: &mut acc::Model) -> Result<Option<OAuth>, StoreError> {
    let (Some(token_url), Some(client_id)) = (m.oauth_token_url.take(), m.oauth_client_id.take())
    else {
        return Ok(None);
    };
    Ok(Some(OAuth {
        token_url,
        client_id,
        client_secret_ref: m
            .oauth_client_secret_ref
            .take()
            .map(|s| s.parse())
            .transpose()?,
        scopes: m
            .oauth_scopes
            .take()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        refresh_store_cmd: m.oauth_refresh_store_cmd.take(),
    }))
}

impl TryFrom<acc::Model> for Account {
    type Error = StoreError;
    fn try_from(mut m: acc::Model) -> Result<Self, StoreError> {
        Ok(Self {
            oauth: oauth_of(&mut m)?,
            id: AccountId(m.id),
            kind: m.kind.parse()?,
            secret_ref: m.secret_ref.parse()?,
            imap: endpoint(m.imap_host, m.imap_port, m.imap_security)?,
            smtp: endpoint(m.smtp_host, m.smtp_port, m.smtp_security)?,
            body_policy: m.body_policy.parse()?,
            name: m.name,
            email: m.email,
            display_name: m.display_name,
            username: m.username,
            jmap_session_url: m.jmap_session_url,
            ca_file: m.ca_file,
            allow_plaintext: m.allow_plaintext,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

/// Creates an account. Fails with [`StoreError::AlreadyExists`] when the name is taken.
pub async fn create<C: ConnectionTrait>(c: &C, new: NewAccount) -> Result<Account, StoreError> {
    create_with(c, new, None).await
}

/// Creates an account with its OAuth 2 settings (None: a password account), in one insert.
pub async fn create_with<C: ConnectionTrait>(
    c: &C,
    new: NewAccount,
    oauth: Option<OAuth>,
) -> Result<Account, StoreError> {
    if find_by_name(c, &new.name).await?.is_some() {
        return Err(StoreError::AlreadyExists {
            what: "account",
            key: new.name,
        });
    }
    let now = crate::now();
    let (imap_host, imap_port, imap_security) = split(new.imap);
    let (smtp_host, smtp_port, smtp_security) = split(new.smtp);
    let model = acc::ActiveModel {
        name: Set(new.name),
        kind: Set(new.kind.as_str().to_owned()),
        email: Set(new.email),
        display_name: Set(new.display_name),
        username: Set(new.username),
        secret_ref: Set(new.secret_ref.to_string()),
        imap_host: Set(imap_host),
        imap_port: Set(imap_port),
        imap_security: Set(imap_security),
        smtp_host: Set(smtp_host),
        smtp_port: Set(smtp_port),
        smtp_security: Set(smtp_security),
        jmap_session_url: Set(new.jmap_session_url),
        ca_file: Set(new.ca_file),
        allow_plaintext: Set(new.allow_plaintext),
        body_policy: Set(new.body_policy.to_string()),
        oauth_token_url: Set(oauth.as_ref().map(|o| o.token_url.clone())),
        oauth_client_id: Set(oauth.as_ref().map(|o| o.client_id.clone())),
        oauth_client_secret_ref: Set(oauth
            .as_ref()
            .and_then(|o| o.client_secret_ref.as_ref().map(ToString::to_string))),
        oauth_scopes: Set(oauth.as_ref().map(|o| o.scopes.join(" "))),
        oauth_refresh_store_cmd: Set(oauth.as_ref().and_then(|o| o.refresh_store_cmd.clone())),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(c)
    .await?;
    model.try_into()
}

fn split(e: Option<Endpoint>) -> (Option<String>, Option<i32>, Option<String>) {
    match e {
        Some(e) => (
            Some(e.host),
            Some(i32::from(e.port)),
            Some(e.security.as_str().to_owned()),
        ),
        None => (None, None, None),
    }
}

/// Loads an account by id.
pub async fn get<C: ConnectionTrait>(c: &C, id: AccountId) -> Result<Account, StoreError> {
    acc::Entity::find_by_id(id.0)
        .one(c)
        .await?
        .ok_or(StoreError::NotFound {
            what: "account",
            key: id.to_string(),
        })?
        .try_into()
}

/// Finds an account by its unique name.
pub async fn find_by_name<C: ConnectionTrait>(
    c: &C,
    name: &str,
) -> Result<Option<Account>, StoreError> {
    acc::Entity::find()
        .filter(acc::Column::Name.eq(name))
        .one(c)
        .await?
        .map(Account::try_from)
        .transpose()
}

/// Every account, by name.
pub async fn list<C: ConnectionTrait>(c: &C) -> Result<Vec<Account>, StoreError> {
    acc::Entity::find()
        .order_by_asc(acc::Column::Name)
        .all(c)
        .await?
        .into_iter()
        .map(Account::try_from)
        .collect()
}

/// Deletes an account and, through the foreign keys, all of its data.
pub async fn delete<C: ConnectionTrait>(c: &C, id: AccountId) -> Result<(), StoreError> {
    let res = acc::Entity::delete_by_id(id.0).exec(c).await?;
    if res.rows_affected == 0 {
        return Err(StoreError::NotFound {
            what: "account",
            key: id.to_string(),
        });
    }
    Ok(())
}

/// Stores an account's edited settings (everything but its id, name, kind and creation
/// time); its data stays. Returns the stored account; [`StoreError::NotFound`] when it no
/// longer exists.
pub async fn update<C: ConnectionTrait>(c: &C, a: &Account) -> Result<Account, StoreError> {
    get(c, a.id).await?;
    let (imap_host, imap_port, imap_security) = split(a.imap.clone());
    let (smtp_host, smtp_port, smtp_security) = split(a.smtp.clone());
    acc::ActiveModel {
        id: Set(a.id.0),
        email: Set(a.email.clone()),
        display_name: Set(a.display_name.clone()),
        username: Set(a.username.clone()),
        secret_ref: Set(a.secret_ref.to_string()),
        imap_host: Set(imap_host),
        imap_port: Set(imap_port),
        imap_security: Set(imap_security),
        smtp_host: Set(smtp_host),
        smtp_port: Set(smtp_port),
        smtp_security: Set(smtp_security),
        jmap_session_url: Set(a.jmap_session_url.clone()),
        ca_file: Set(a.ca_file.clone()),
        allow_plaintext: Set(a.allow_plaintext),
        body_policy: Set(a.body_policy.to_string()),
        updated_at: Set(crate::now()),
        ..Default::default()
    }
    .update(c)
    .await?
    .try_into()
}

/// Changes the body download policy.
pub async fn set_body_policy<C: ConnectionTrait>(
    c: &C,
    id: AccountId,
    policy: BodyPolicy,
) -> Result<(), StoreError> {
    acc::ActiveModel {
        id: Set(id.0),
        body_policy: Set(policy.to_string()),
        updated_at: Set(crate::now()),
        ..Default::default()
    }
    .update(c)
    .await?;
    Ok(())
}
