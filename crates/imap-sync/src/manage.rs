//! Mailbox management on the server: CREATE (with a special-use role, RFC 6154), RENAME,
//! DELETE, SUBSCRIBE/UNSUBSCRIBE, each read back with LIST so the caller knows the outcome.

use mailsync_store::Role;

use crate::connection::Connection;
use crate::error::Error;
use crate::utf7;
use crate::wire::{Cmd, ListEntry, Untagged};

/// A mailbox as the server lists it after a management command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ManagedMailbox {
    /// The wire name (modified UTF-7): the store's `remote_id` of an IMAP mailbox.
    pub remote_id: String,
    /// The decoded name.
    pub name: String,
    /// The special-use role the server reports (`None` without SPECIAL-USE or without one).
    pub role: Option<Role>,
    /// Whether it is subscribed (`None`: the server cannot say, no LIST-EXTENDED).
    pub subscribed: Option<bool>,
}

fn special_use(role: Role) -> &'static str {
    match role {
        Role::Inbox => "\\Inbox",
        Role::Sent => "\\Sent",
        Role::Drafts => "\\Drafts",
        Role::Trash => "\\Trash",
        Role::Junk => "\\Junk",
        Role::Archive => "\\Archive",
    }
}

/// The LIST entries whose name is exactly `remote_id` (a name may contain `*` or `%`, which
/// LIST takes as wildcards). With LIST-EXTENDED, `\Subscribed` is returned too.
async fn list_exact(conn: &mut Connection, remote_id: &str) -> Result<Vec<ListEntry>, Error> {
    let extended = conn.has_capability("LIST-EXTENDED");
    let mut cmd = Cmd::new("LIST").raw("\"\"").astring(remote_id);
    if extended {
        let mut ret = String::from("RETURN (SUBSCRIBED");
        if conn.has_capability("SPECIAL-USE") {
            ret.push_str(" SPECIAL-USE");
        }
        ret.push(')');
        cmd = cmd.raw(&ret);
    }
    let (data, _) = conn.run(&cmd).await?;
    Ok(data
        .into_iter()
        .filter_map(|u| match u {
            Untagged::List(l) if l.name == remote_id => Some(l),
            _ => None,
        })
        .collect())
}

/// Reads one mailbox back; `None` when the server does not list it.
pub async fn lookup(
    conn: &mut Connection,
    remote_id: &str,
) -> Result<Option<ManagedMailbox>, Error> {
    let extended = conn.has_capability("LIST-EXTENDED");
    Ok(list_exact(conn, remote_id)
        .await?
        .into_iter()
        .next()
        .map(|l| {
            // `\NonExistent` marks a subscription to a mailbox that does not exist (RFC 5258).
            let exists = !l
                .attributes
                .iter()
                .any(|a| a.eq_ignore_ascii_case("\\NonExistent"));
            let subscribed = extended.then(|| {
                l.attributes
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case("\\Subscribed"))
            });
            (
                exists,
                ManagedMailbox {
                    remote_id: l.name.clone(),
                    name: utf7::decode(&l.name).unwrap_or_else(|| l.name.clone()),
                    role: crate::mailboxes::role_from_attributes(&l.attributes),
                    subscribed,
                },
            )
        })
        .and_then(|(exists, m)| exists.then_some(m)))
}

/// The wire name of `name` (decoded) under `parent` (a wire name), joined with the parent's
/// hierarchy delimiter.
async fn child_name(
    conn: &mut Connection,
    parent: Option<&str>,
    name: &str,
) -> Result<String, Error> {
    let leaf = utf7::encode(name);
    let Some(parent) = parent else {
        return Ok(leaf);
    };
    let entry = list_exact(conn, parent)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Error::No {
            command: "LIST".into(),
            code: Some(crate::ResponseCode::NonExistent),
            text: format!("parent mailbox {parent:?} does not exist"),
        })?;
    let delim = entry
        .delimiter
        .filter(|d| !d.is_empty())
        .ok_or_else(|| Error::No {
            command: "CREATE".into(),
            code: Some(crate::ResponseCode::Cannot),
            text: "the server has no mailbox hierarchy".into(),
        })?;
    Ok(format!("{parent}{delim}{leaf}"))
}

/// The wire name a mailbox `name` (decoded) under `parent` (a wire name) has: what
/// [`create_mailbox`] and [`rename_mailbox`] would create, to look it up before repeating a
/// command whose outcome is unknown.
pub async fn wire_name(
    conn: &mut Connection,
    parent: Option<&str>,
    name: &str,
) -> Result<String, Error> {
    child_name(conn, parent, name).await
}

/// `CREATE` a mailbox named `name` (decoded) under `parent` (a wire name), with a special-use
/// `role` (`CREATE name (USE (\Drafts))`, RFC 6154 §3), then LIST it back. A role on a server
/// without CREATE-SPECIAL-USE is [`Error::MissingCapability`], and nothing is created.
pub async fn create_mailbox(
    conn: &mut Connection,
    parent: Option<&str>,
    name: &str,
    role: Option<Role>,
) -> Result<ManagedMailbox, Error> {
    if role.is_some() && !conn.has_capability("CREATE-SPECIAL-USE") {
        return Err(Error::MissingCapability {
            capability: "CREATE-SPECIAL-USE".into(),
        });
    }
    let remote_id = child_name(conn, parent, name).await?;
    let mut cmd = Cmd::new("CREATE").astring(&remote_id);
    if let Some(r) = role {
        cmd = cmd.raw(&format!("(USE ({}))", special_use(r)));
    }
    conn.run(&cmd).await?;
    read_back(conn, &remote_id, "CREATE").await
}

async fn read_back(
    conn: &mut Connection,
    remote_id: &str,
    command: &str,
) -> Result<ManagedMailbox, Error> {
    lookup(conn, remote_id).await?.ok_or_else(|| Error::No {
        command: command.into(),
        code: Some(crate::ResponseCode::NonExistent),
        text: format!("{remote_id:?} is not listed after {command}"),
    })
}

/// `RENAME` `from` (a wire name) to `name` (decoded) under `parent` (a wire name; `None`: top
/// level), then LIST the new name back.
pub async fn rename_mailbox(
    conn: &mut Connection,
    from: &str,
    parent: Option<&str>,
    name: &str,
) -> Result<ManagedMailbox, Error> {
    let to = child_name(conn, parent, name).await?;
    conn.run(&Cmd::new("RENAME").astring(from).astring(&to))
        .await?;
    read_back(conn, &to, "RENAME").await
}

/// Why deleting `remote_id` would take mail with it that a client whose view was synced to
/// (`uidvalidity`, `uidnext`) has not seen, if it would: the mailbox was re-created, or UIDs
/// were assigned at or above `uidnext` (another client moved, copied or delivered mail into
/// it). One STATUS; `None` when nothing unseen can be there, or nothing is known to compare.
/// Conservative: mail that arrived and left again also counts.
pub async fn unseen_mail(
    conn: &mut Connection,
    remote_id: &str,
    uidvalidity: Option<i64>,
    uidnext: Option<i64>,
) -> Result<Option<String>, Error> {
    let st = conn
        .status_many(&[remote_id.to_owned()])
        .await?
        .into_iter()
        .next()
        .transpose()?
        .unwrap_or_default();
    if let (Some(was), Some(now)) = (uidvalidity, st.uidvalidity)
        && was != i64::from(now)
    {
        return Ok(Some(format!(
            "it was re-created on the server since (UIDVALIDITY {was} -> {now})"
        )));
    }
    if let (Some(was), Some(now)) = (uidnext, st.uidnext)
        && i64::from(now) > was
    {
        return Ok(Some(format!(
            "mail arrived in it since the delete was asked ({} new UID(s))",
            i64::from(now) - was
        )));
    }
    Ok(None)
}

/// The RFC 8474 MAILBOXID of `remote_id` (a wire name), read from the `[MAILBOXID (id)]`
/// response code of an `EXAMINE` (read-only, so closing it expunges nothing), which is then
/// closed again. `None` without OBJECTID (nothing is sent), or when the server gives no
/// well-formed id. Not STATUS: Cyrus 3.6 answers `STATUS (... MAILBOXID)` together with
/// UIDNEXT or MESSAGES with bytes that are no id (seen on the test server).
pub async fn mailbox_id(conn: &mut Connection, remote_id: &str) -> Result<Option<String>, Error> {
    if !conn.has_capability("OBJECTID") {
        return Ok(None);
    }
    // EXAMINE leaves any mailbox selected before; the connection must not think otherwise.
    conn.forget_selection();
    let (data, done) = conn.run(&Cmd::new("EXAMINE").astring(remote_id)).await?;
    let id = data
        .iter()
        .filter_map(|u| match u {
            Untagged::Cond { code: Some(c), .. } => crate::connection::mailbox_id_code(c),
            _ => None,
        })
        .chain(
            done.code
                .as_ref()
                .and_then(crate::connection::mailbox_id_code),
        )
        .next();
    let close = if conn.has_capability("UNSELECT") {
        "UNSELECT"
    } else {
        "CLOSE"
    };
    conn.run(&Cmd::new(close)).await?;
    Ok(id)
}

/// `DELETE` a mailbox (a wire name) and check it is no longer listed. Its messages go with it.
pub async fn delete_mailbox(conn: &mut Connection, remote_id: &str) -> Result<(), Error> {
    // A server may drop the connection of a client whose selected mailbox it deletes (Dovecot:
    // "BYE Selected mailbox was deleted"), which a change queued just before (a message moved
    // out of it) leaves selected. UNSELECT, or without it CLOSE after EXAMINE (read-only, so
    // nothing is expunged), leaves no mailbox selected first.
    // Best effort: a NO or BAD here (the server had deselected it already) is no reason not
    // to delete.
    if conn.selected.as_ref().is_some_and(|s| s.name == remote_id) {
        let deselected = if conn.has_capability("UNSELECT") {
            conn.run(&Cmd::new("UNSELECT")).await.map(drop)
        } else {
            match conn.run(&Cmd::new("EXAMINE").astring(remote_id)).await {
                Ok(_) => conn.run(&Cmd::new("CLOSE")).await.map(drop),
                Err(e) => Err(e),
            }
        };
        conn.forget_selection();
        if let Err(e) = deselected
            && e.is_connection()
        {
            return Err(e);
        }
    }
    match conn.run(&Cmd::new("DELETE").astring(remote_id)).await {
        Ok(_) => {}
        // Cyrus's delayed delete keeps a deleted mailbox as `DELETED.<name>.<time in seconds>`,
        // so a second DELETE of a name within the same second (deleted, re-created, deleted)
        // collides with the first and gets a bare `NO Mailbox already exists`. A NO without a
        // response code to a DELETE of a mailbox still listed is tried once more a second
        // later; whatever that answers stands.
        Err(Error::No { code: None, .. }) if lookup(conn, remote_id).await?.is_some() => {
            tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
            conn.run(&Cmd::new("DELETE").astring(remote_id)).await?;
        }
        Err(e) => return Err(e),
    }
    if lookup(conn, remote_id).await?.is_some() {
        return Err(Error::No {
            command: "DELETE".into(),
            code: None,
            text: format!("{remote_id:?} is still listed after DELETE"),
        });
    }
    Ok(())
}

/// `SUBSCRIBE` or `UNSUBSCRIBE` a mailbox (a wire name), then read the subscription back
/// (with LIST-EXTENDED). Returns the mailbox as listed.
pub async fn set_subscribed(
    conn: &mut Connection,
    remote_id: &str,
    subscribed: bool,
) -> Result<ManagedMailbox, Error> {
    let verb = if subscribed {
        "SUBSCRIBE"
    } else {
        "UNSUBSCRIBE"
    };
    conn.run(&Cmd::new(verb).astring(remote_id)).await?;
    let m = read_back(conn, remote_id, verb).await?;
    if m.subscribed.is_some_and(|s| s != subscribed) {
        return Err(Error::No {
            command: verb.into(),
            code: None,
            text: format!("{remote_id:?} subscription unchanged after {verb}"),
        });
    }
    Ok(m)
}
