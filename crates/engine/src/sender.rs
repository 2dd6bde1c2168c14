//! The address a JMAP account sends from when the user gave none: the server's own sending
//! identities (`Identity/get`) first, since a server refuses a From it has no identity for.

use mailsync_jmap_client::{Client, Get, Identity};

use crate::error::EngineError;
use crate::oauth::Creds;

/// Picks the sender among what the server says: the identity whose address is the login name
/// (when that is an address), else the first identity with an address, else the Session's
/// account name when it is an address, else the login name when it is one. `None`: nothing
/// usable, the user must give the address.
pub fn pick_sender(
    identities: &[Identity],
    account_name: Option<&str>,
    username: &str,
) -> Option<String> {
    let is_address = |s: &str| {
        s.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
    };
    let addresses: Vec<&str> = identities
        .iter()
        .filter_map(|i| i.email.as_deref())
        .filter(|e| is_address(e))
        .collect();
    addresses
        .iter()
        .find(|e| e.eq_ignore_ascii_case(username))
        .or_else(|| addresses.first())
        .map(|e| (*e).to_owned())
        .or_else(|| account_name.filter(|n| is_address(n)).map(str::to_owned))
        .or_else(|| is_address(username).then(|| username.to_owned()))
}

/// The sender of a JMAP account, asked of the server (see [`pick_sender`]). A server without
/// submission (no identities to read) falls back to the names it gave.
pub async fn jmap_default_sender(
    session_url: &str,
    username: &str,
    creds: Creds<'_>,
) -> Result<Option<String>, EngineError> {
    let client = crate::oauth::with_login(creds, |login| async move {
        Ok(crate::jmap_driver::builder(username, login, creds)
            .await?
            .connect(session_url)
            .await?)
    })
    .await?;
    Ok(pick(&client, username).await)
}

async fn pick(client: &Client, username: &str) -> Option<String> {
    let session = client.session();
    let account_name = client
        .mail_account_id()
        .ok()
        .and_then(|id| session.account(&id).map(|a| a.name.clone()));
    let identities = match client
        .session()
        .primary_account(mailsync_jmap_client::session::capability::SUBMISSION)
    {
        Some(id) => match client.call(Get::<Identity>::new(id)).await {
            Ok(r) => r.list,
            Err(e) => {
                tracing::debug!(error = %e, "Identity/get failed; using the account's names");
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    pick_sender(&identities, account_name.as_deref(), username)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(email: &str) -> Identity {
        serde_json::from_value(serde_json::json!({"id": email, "name": "", "email": email}))
            .expect("identity")
    }

    #[test]
    fn sender_choice() {
        let two = [id("alice@real.example"), id("bob@real.example")];
        assert_eq!(
            pick_sender(&two, None, "bob@real.example").as_deref(),
            Some("bob@real.example")
        );
        // A bare login never becomes login@host: the server's identity is used.
        assert_eq!(
            pick_sender(&two, None, "alice").as_deref(),
            Some("alice@real.example")
        );
        assert_eq!(
            pick_sender(&[], Some("alice@acct.example"), "alice").as_deref(),
            Some("alice@acct.example")
        );
        assert_eq!(
            pick_sender(&[id("alice")], Some("alice"), "a@b.example").as_deref(),
            Some("a@b.example")
        );
        assert_eq!(pick_sender(&[id("alice")], Some("alice"), "alice"), None);
    }
}
