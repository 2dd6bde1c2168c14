//! `account add|test|list|remove`: settings validation, the connection test, listing.

use std::net::IpAddr;

use mailsync_engine::oauth::Creds;
use mailsync_store::accounts::{Endpoint, NewAccount, OAuth};
use mailsync_store::{AccountKind, BodyPolicy, SecretRef, Security};

use super::Ctx;
use crate::args::{AccountAddArgs, AccountCmd, AccountEditArgs, JsonArg, SecurityArg};
use crate::error::CliError;
use crate::output;

pub async fn run(ctx: &Ctx, cmd: AccountCmd) -> Result<u8, CliError> {
    match cmd {
        AccountCmd::Add(a) => add(ctx, *a).await,
        AccountCmd::Edit(a) => edit(ctx, *a).await,
        AccountCmd::Test { name } => test(ctx, &name).await,
        AccountCmd::List(a) => list(ctx, a).await,
        AccountCmd::Remove { name } => remove(ctx, &name).await,
    }
}

fn security(s: SecurityArg) -> Security {
    match s {
        SecurityArg::Tls => Security::Tls,
        SecurityArg::Starttls => Security::Starttls,
        SecurityArg::Plain => Security::Plain,
    }
}

/// True for `localhost` and loopback addresses.
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// Splits `HOST[:PORT]` (IPv6 as `[::1]:143`); `default_port` when no port is given.
pub fn host_port(s: &str, default_port: u16) -> Result<(String, u16), CliError> {
    let s = s.trim();
    let bad = || CliError::usage(format!("invalid server {s:?}: expected HOST or HOST:PORT"));
    if s.is_empty() {
        return Err(bad());
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host.to_owned(), p.parse().map_err(|_| bad())?)),
            None if after.is_empty() => Ok((host.to_owned(), default_port)),
            None => Err(bad()),
        };
    }
    match s.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 address.
        Some((h, _)) if h.contains(':') => Ok((s.to_owned(), default_port)),
        Some((h, p)) if !h.is_empty() => Ok((h.to_owned(), p.parse().map_err(|_| bad())?)),
        Some(_) => Err(bad()),
        None => Ok((s.to_owned(), default_port)),
    }
}

/// The host of an http(s) URL, and whether it is plain http.
fn url_host(url: &str) -> Result<(bool, String), CliError> {
    let bad = || {
        CliError::usage(format!(
            "invalid JMAP URL {url:?}: expected http(s)://HOST/..."
        ))
    };
    let (plain, rest) = if let Some(r) = url.strip_prefix("https://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (true, r)
    } else {
        return Err(bad());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, _) = host_port(authority, 0).map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((plain, host))
}

async fn add(ctx: &Ctx, a: AccountAddArgs) -> Result<u8, CliError> {
    let object = format!("account {:?}", a.name);
    if a.name.trim().is_empty() {
        return Err(CliError::usage("the account name cannot be empty"));
    }
    // Before any network use: discovery and the sender lookup would only be wasted.
    if ctx.account(&a.name).await.is_ok() {
        return Err(CliError::failure(format!(
            "{object}: an account with this name exists already"
        )));
    }
    let body_policy: BodyPolicy = a.bodies.parse().map_err(|_| {
        CliError::usage(format!(
            "invalid --bodies {:?}: expected none, all or <N>kb",
            a.bodies
        ))
    })?;
    let secret_ref = match (
        &a.password_env,
        &a.password_cmd,
        &a.oauth_refresh_env,
        &a.oauth_refresh_cmd,
    ) {
        (Some(v), None, None, None) => SecretRef::Env(v.clone()),
        (None, Some(c), None, None) => SecretRef::Command(c.clone()),
        (None, None, Some(v), None) if a.oauth2 => SecretRef::Env(v.clone()),
        (None, None, None, Some(c)) if a.oauth2 => SecretRef::Command(c.clone()),
        _ if a.oauth2 => {
            return Err(CliError::usage(
                "--oauth2: give exactly one of --oauth-refresh-env and --oauth-refresh-cmd",
            ));
        }
        _ => {
            return Err(CliError::usage(
                "give exactly one of --password-env and --password-cmd",
            ));
        }
    };
    let oauth = if a.oauth2 {
        let (Some(token_url), Some(client_id)) = (&a.oauth_token_url, &a.oauth_client_id) else {
            return Err(CliError::usage(
                "--oauth2 needs --oauth-token-url and --oauth-client-id",
            ));
        };
        Some(OAuth {
            token_url: token_url.clone(),
            client_id: client_id.clone(),
            client_secret_ref: match (&a.oauth_client_secret_env, &a.oauth_client_secret_cmd) {
                (Some(v), _) => Some(SecretRef::Env(v.clone())),
                (None, Some(c)) => Some(SecretRef::Command(c.clone())),
                (None, None) => None,
            },
            scopes: a
                .oauth_scopes
                .iter()
                .flat_map(|s| s.split_whitespace())
                .map(str::to_owned)
                .collect(),
            refresh_store_cmd: a.oauth_refresh_store_cmd.clone(),
        })
    } else {
        None
    };
    let ca_for_creds = a.ca_file.as_ref().map(|p| p.display().to_string());
    let creds = Creds {
        name: &a.name,
        secret_ref: &secret_ref,
        oauth: oauth.as_ref(),
        allow_plaintext: a.allow_plaintext,
        ca_file: ca_for_creds.as_deref(),
    };
    let refuse_plain = |host: &str, what: &str| -> Result<(), CliError> {
        if !a.allow_plaintext && !is_loopback(host) {
            Err(CliError::usage(format!(
                "{object}: refusing {what} to non-loopback host {host:?} (use --allow-plaintext to force)"
            )))
        } else {
            Ok(())
        }
    };
    let (kind, imap, smtp, jmap_url, server_host) = if let Some(given) = &a.jmap {
        // A URL as given, else an address or host to discover over https.
        let host = if given.contains("://") {
            let (plain, host) = url_host(given)?;
            if plain {
                refuse_plain(&host, "plain http://")?;
            }
            host
        } else {
            let host = given.rsplit_once('@').map_or(given.as_str(), |(_, d)| d);
            let (host, _) = host_port(host, 443)?;
            if host.is_empty() {
                return Err(CliError::usage(format!(
                    "invalid --jmap {given:?}: expected a URL, a host or an email address"
                )));
            }
            host
        };
        let url = mailsync_engine::jmap_driver::discover_session_url(given, &a.user, creds)
            .await
            .map_err(|e| CliError::engine(&object, &e))?;
        (AccountKind::Jmap, None, None, Some(url), host)
    } else if let Some(imap) = &a.imap {
        let sec = security(a.security.unwrap_or(SecurityArg::Tls));
        let default_port = if sec == Security::Tls { 993 } else { 143 };
        let (host, port) = host_port(imap, default_port)?;
        if sec == Security::Plain {
            refuse_plain(&host, "plain IMAP")?;
        }
        let smtp = match &a.smtp {
            Some(s) => {
                let ssec = a.smtp_security.map(security).unwrap_or(sec);
                let dp = match ssec {
                    Security::Tls => 465,
                    Security::Starttls => 587,
                    Security::Plain => 25,
                };
                let (shost, sport) = host_port(s, dp)?;
                if ssec == Security::Plain {
                    refuse_plain(&shost, "plain SMTP")?;
                }
                Some(Endpoint {
                    host: shost,
                    port: sport,
                    security: ssec,
                })
            }
            None => None,
        };
        (
            AccountKind::Imap,
            Some(Endpoint {
                host: host.clone(),
                port,
                security: sec,
            }),
            smtp,
            None,
            host,
        )
    } else {
        return Err(CliError::usage("give --imap or --jmap"));
    };
    let ca_file = match &a.ca_file {
        Some(p) => {
            let abs = std::fs::canonicalize(p)
                .map_err(|e| CliError::usage(format!("--ca-file {}: {e}", p.display())))?;
            Some(abs.display().to_string())
        }
        None => None,
    };
    let email = match (&a.email, &jmap_url) {
        (Some(e), _) => e.clone(),
        // JMAP: the server knows which From it accepts (its identities); never guess
        // user@host, which it would refuse at the first send.
        (None, Some(url)) => mailsync_engine::sender::jmap_default_sender(
            url,
            &a.user,
            Creds {
                ca_file: ca_file.as_deref(),
                ..creds
            },
        )
        .await
        .map_err(|e| CliError::engine(&object, &e))?
        .ok_or_else(|| {
            CliError::usage(format!(
                "{object}: the server names no sending address for {:?}; give --email",
                a.user
            ))
        })?,
        (None, None) if a.user.contains('@') => a.user.clone(),
        (None, None) => format!("{}@{}", a.user, server_host),
    };
    let new = NewAccount {
        name: a.name.clone(),
        kind,
        email,
        display_name: a.display_name.clone(),
        username: a.user.clone(),
        secret_ref: secret_ref.clone(),
        imap,
        smtp,
        jmap_session_url: jmap_url,
        ca_file,
        allow_plaintext: a.allow_plaintext,
        body_policy,
    };
    let acc = ctx
        .engine
        .add_account_with(new, oauth)
        .await
        .map_err(|e| CliError::engine(&object, &e))?;
    output::line(format!(
        "account {:?} added ({}, {})",
        acc.name,
        acc.kind.as_str(),
        acc.email
    ))?;
    Ok(0)
}

fn default_imap_port(sec: Security) -> u16 {
    if sec == Security::Tls { 993 } else { 143 }
}

fn default_smtp_port(sec: Security) -> u16 {
    match sec {
        Security::Tls => 465,
        Security::Starttls => 587,
        Security::Plain => 25,
    }
}

/// An endpoint after an edit: a new `HOST[:PORT]` (default port of the security in force),
/// and/or a new security (alone: same host and port).
fn edited_endpoint(
    current: Option<&Endpoint>,
    given: Option<&str>,
    sec: Option<Security>,
    default_port: fn(Security) -> u16,
    what: &str,
) -> Result<Option<Endpoint>, CliError> {
    let security = sec.or(current.map(|e| e.security)).unwrap_or(Security::Tls);
    match (given, current) {
        (Some(g), _) => {
            let (host, port) = host_port(g, default_port(security))?;
            Ok(Some(Endpoint {
                host,
                port,
                security,
            }))
        }
        (None, Some(c)) => Ok(Some(Endpoint {
            security,
            ..c.clone()
        })),
        (None, None) if sec.is_some() => Err(CliError::usage(format!(
            "the account has no {what} server to change the security of; give --{what}"
        ))),
        (None, None) => Ok(None),
    }
}

async fn edit(ctx: &Ctx, a: AccountEditArgs) -> Result<u8, CliError> {
    let object = format!("account {:?}", a.name);
    let current = ctx.account(&a.name).await?;
    let mut acc = current.clone();
    if let Some(b) = &a.bodies {
        acc.body_policy = b.parse().map_err(|_| {
            CliError::usage(format!(
                "invalid --bodies {b:?}: expected none, all or <N>kb"
            ))
        })?;
    }
    if let Some(v) = &a.password_env {
        acc.secret_ref = SecretRef::Env(v.clone());
    }
    if let Some(c) = &a.password_cmd {
        acc.secret_ref = SecretRef::Command(c.clone());
    }
    if let Some(u) = &a.user {
        acc.username = u.clone();
    }
    if let Some(e) = &a.email {
        acc.email = e.clone();
    }
    if let Some(d) = &a.display_name {
        acc.display_name = Some(d.clone());
    }
    if a.allow_plaintext {
        acc.allow_plaintext = true;
    }
    if let Some(p) = &a.ca_file {
        let abs = std::fs::canonicalize(p)
            .map_err(|e| CliError::usage(format!("--ca-file {}: {e}", p.display())))?;
        acc.ca_file = Some(abs.display().to_string());
    }
    match current.kind {
        AccountKind::Imap => {
            if a.jmap.is_some() {
                return Err(CliError::usage(format!(
                    "{object} is an IMAP account: --jmap cannot change its protocol (remove and add it)"
                )));
            }
            let sec = a.security.map(security);
            acc.imap = edited_endpoint(
                current.imap.as_ref(),
                a.imap.as_deref(),
                sec,
                default_imap_port,
                "imap",
            )?;
            let ssec = a.smtp_security.map(security);
            acc.smtp = edited_endpoint(
                current.smtp.as_ref(),
                a.smtp.as_deref(),
                ssec,
                default_smtp_port,
                "smtp",
            )?;
        }
        AccountKind::Jmap => {
            if a.imap.is_some() || a.smtp.is_some() || a.security.is_some() {
                return Err(CliError::usage(format!(
                    "{object} is a JMAP account: --imap, --smtp and --security do not apply"
                )));
            }
            if let Some(given) = &a.jmap {
                let creds = mailsync_engine::oauth::Creds::from(&acc);
                let url =
                    mailsync_engine::jmap_driver::discover_session_url(given, &acc.username, creds)
                        .await
                        .map_err(|e| CliError::engine(&object, &e))?;
                acc.jmap_session_url = Some(url);
            }
        }
    }
    // The same plaintext rule as `add`, on the settings in force after the edit.
    if !acc.allow_plaintext {
        for e in acc.imap.iter().chain(acc.smtp.iter()) {
            if e.security == Security::Plain && !is_loopback(&e.host) {
                return Err(CliError::usage(format!(
                    "{object}: refusing plaintext to non-loopback host {:?} (use --allow-plaintext to force)",
                    e.host
                )));
            }
        }
        if let Some(u) = &acc.jmap_session_url {
            let (plain, host) = url_host(u)?;
            if plain && !is_loopback(&host) {
                return Err(CliError::usage(format!(
                    "{object}: refusing plain http:// to non-loopback host {host:?} (use --allow-plaintext to force)"
                )));
            }
        }
    }
    if acc == current {
        output::line(format!("account {:?}: nothing to change", acc.name))?;
        return Ok(0);
    }
    let saved = ctx
        .engine
        .edit_account(acc)
        .await
        .map_err(|e| CliError::engine(&object, &e))?;
    output::line(format!(
        "account {:?} updated (connection tested; bodies {})",
        saved.name,
        output::body_policy(saved.body_policy)
    ))?;
    Ok(0)
}

async fn test(ctx: &Ctx, name: &str) -> Result<u8, CliError> {
    let acc = ctx.account(name).await?;
    let used = ctx
        .engine
        .test_account(&acc)
        .await
        .map_err(|e| CliError::engine(&format!("account {name:?}"), &e))?;
    output::line(format!("account {name:?}: ok ({used})"))?;
    Ok(0)
}

async fn list(ctx: &Ctx, a: JsonArg) -> Result<u8, CliError> {
    let all = ctx.accounts(&[]).await?;
    for acc in &all {
        if a.json {
            output::json_line(&output::account_json(acc))?;
        } else {
            let server = match (&acc.imap, &acc.jmap_session_url) {
                (Some(e), _) => format!("{}:{} ({})", e.host, e.port, e.security.as_str()),
                (None, Some(u)) => u.clone(),
                _ => String::new(),
            };
            output::line(format!(
                "{}  {}  {}  {}",
                output::cell(&acc.name, 16),
                output::cell(acc.kind.as_str(), 4),
                output::cell(&acc.email, 30),
                server
            ))?;
        }
    }
    Ok(0)
}

async fn remove(ctx: &Ctx, name: &str) -> Result<u8, CliError> {
    let acc = ctx.account(name).await?;
    ctx.engine
        .remove_account(acc.id)
        .await
        .map_err(|e| CliError::engine(&format!("account {name:?}"), &e))?;
    output::line(format!("account {name:?} removed"))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(host_port("h", 993).ok(), Some(("h".into(), 993)));
        assert_eq!(host_port("h:10143", 993).ok(), Some(("h".into(), 10143)));
        assert_eq!(host_port("[::1]:5", 993).ok(), Some(("::1".into(), 5)));
        assert_eq!(host_port("::1", 993).ok(), Some(("::1".into(), 993)));
        assert!(host_port("h:x", 993).is_err());
        assert!(host_port(":5", 993).is_err());
        assert!(host_port("", 993).is_err());
    }

    #[test]
    fn loopback_and_urls() {
        assert!(is_loopback("127.0.0.1") && is_loopback("localhost") && is_loopback("[::1]"));
        assert!(!is_loopback("example.org") && !is_loopback("10.0.0.1"));
        assert_eq!(
            url_host("http://127.0.0.1:10080/jmap/").ok(),
            Some((true, "127.0.0.1".into()))
        );
        assert_eq!(
            url_host("https://u@mail.example.org/.well-known/jmap").ok(),
            Some((false, "mail.example.org".into()))
        );
        assert!(url_host("ftp://x").is_err());
    }
}
