//! Sends a built message over SMTP with lettre: implicit TLS, STARTTLS (required), or plaintext
//! to loopback / by explicit opt-in; AUTH with the account's credentials (PLAIN or LOGIN with a
//! password, XOAUTH2 with an OAuth 2 access token).
//!
//! Sending is two steps so the caller can journal the hand-over in between: [`connect`]
//! (connection, TLS, EHLO, AUTH: nothing of the message has left) and [`SmtpSession::submit`]
//! (`MAIL`, `RCPT`, `DATA`). A failure of `submit` with the server's negative reply is a
//! definite refusal; a connection lost or timed out during it is [`SmtpError::Interrupted`]:
//! the server may have accepted the message.

use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, Tls, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::{Executor as _, Tokio1Executor};
use mailsync_store::Security;
use mailsync_store::accounts::Endpoint;

use crate::compose::Built;
use crate::secret::Secret;

/// An SMTP failure, typed for classification.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmtpError {
    /// The server could not be reached.
    #[error("SMTP server {server} unreachable: {reason}")]
    Connect {
        /// host:port
        server: String,
        /// Why.
        reason: String,
    },
    /// TLS failed (certificate, handshake) or plaintext was refused by policy.
    #[error("SMTP TLS with {server} failed: {reason}")]
    Tls {
        /// host:port
        server: String,
        /// Why.
        reason: String,
    },
    /// The server refused the credentials.
    #[error("SMTP authentication failed at {server}: {reason}")]
    Auth {
        /// host:port
        server: String,
        /// What the server said.
        reason: String,
    },
    /// The server refused the message or a recipient.
    #[error("SMTP server refused the message ({}): {reason}", code.map(|c| c.to_string()).unwrap_or_else(|| "no code".into()))]
    Rejected {
        /// The SMTP reply code.
        code: Option<u16>,
        /// 5xx (true) or 4xx (false).
        permanent: bool,
        /// What the server said.
        reason: String,
    },
    /// The connection failed while the message was being handed over (after `MAIL FROM`,
    /// before the server's final reply to DATA was read): it may have been accepted.
    #[error(
        "SMTP transaction with {server} interrupted, the message may have been accepted: {reason}"
    )]
    Interrupted {
        /// host:port
        server: String,
        /// Why.
        reason: String,
    },
    /// Anything else (protocol error, timeout).
    #[error("SMTP error: {reason}")]
    Other {
        /// Why.
        reason: String,
    },
}

/// Whether plaintext may be used to `host`: loopback always, others only with the opt-in.
pub fn plaintext_allowed(host: &str, opt_in: bool) -> bool {
    opt_in
        || host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// How to reach and authenticate to an SMTP server.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Server and security.
    pub endpoint: Endpoint,
    /// Login (None: no AUTH).
    pub username: Option<String>,
    /// Password, or an OAuth 2 access token when `bearer`.
    pub password: Option<Secret>,
    /// `password` is an OAuth 2 access token: authenticate with XOAUTH2.
    pub bearer: bool,
    /// Extra trusted CA (PEM), e.g. for a test server.
    pub ca_pem: Option<Vec<u8>>,
    /// Explicit opt-in to plaintext to a non-loopback host.
    pub allow_plaintext: bool,
}

/// An open, authenticated SMTP connection; nothing of a message has been sent on it yet.
pub struct SmtpSession {
    conn: AsyncSmtpConnection,
    server: String,
    mechanism: Option<Mechanism>,
}

impl std::fmt::Debug for SmtpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSession")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// Sends one message (connect, then submit). Returns the server's reply text on success.
pub async fn send(cfg: &SmtpConfig, built: &Built) -> Result<String, SmtpError> {
    connect(cfg).await?.submit(built).await
}

/// Connects, secures and authenticates. A failure here means nothing was sent.
pub async fn connect(cfg: &SmtpConfig) -> Result<SmtpSession, SmtpError> {
    let ep = &cfg.endpoint;
    let server = format!("{}:{}", ep.host, ep.port);
    let tls_params = || {
        let mut b = TlsParameters::builder(ep.host.clone());
        if let Some(pem) = &cfg.ca_pem {
            let cert = Certificate::from_pem(pem).map_err(|e| SmtpError::Tls {
                server: server.clone(),
                reason: format!("bad CA file: {e}"),
            })?;
            b = b.add_root_certificate(cert);
        }
        b.build_rustls().map_err(|e| SmtpError::Tls {
            server: server.clone(),
            reason: e.to_string(),
        })
    };
    let tls = match ep.security {
        Security::Tls => Tls::Wrapper(tls_params()?),
        Security::Starttls => Tls::Required(tls_params()?),
        Security::Plain => {
            if !plaintext_allowed(&ep.host, cfg.allow_plaintext) {
                return Err(SmtpError::Tls {
                    server,
                    reason: "plaintext SMTP to a non-loopback host needs --allow-plaintext".into(),
                });
            }
            Tls::None
        }
    };
    let mut conn = Tokio1Executor::connect(
        &ep.host,
        ep.port,
        Some(Duration::from_secs(60)),
        &ClientId::default(),
        &tls,
    )
    .await
    .map_err(|e| map_err(&server, e))?;
    let mut mechanism = None;
    if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
        let creds = Credentials::new(u.clone(), p.expose().to_owned());
        let offered: &[Mechanism] = if cfg.bearer {
            &[Mechanism::Xoauth2]
        } else {
            DEFAULT_MECHANISMS
        };
        // lettre takes the first of these the server advertises; remember which.
        mechanism = offered
            .iter()
            .copied()
            .find(|m| conn.server_info().supports_auth_mechanism(*m));
        conn.auth(offered, &creds)
            .await
            .map_err(|e| map_err(&server, e))?;
    }
    Ok(SmtpSession {
        conn,
        server,
        mechanism,
    })
}

impl SmtpSession {
    /// The SASL mechanism this session authenticated with (`PLAIN`, `LOGIN`, `XOAUTH2`), or
    /// `none` when it did not authenticate.
    pub fn mechanism(&self) -> String {
        self.mechanism
            .map_or_else(|| "none".to_owned(), |m| m.to_string())
    }

    /// Ends the session without sending anything.
    pub async fn quit(mut self) {
        let _ = self.conn.quit().await;
    }

    /// Hands `built` over (`MAIL`, `RCPT`, `DATA`, the message) and returns the server's final
    /// reply text. The failpoint `send:data` stops after the server's 354, before the message.
    pub async fn submit(mut self, built: &Built) -> Result<String, SmtpError> {
        let envelope = envelope(built)?;
        match self.transaction(&envelope, &built.raw).await {
            Ok(resp) => {
                // The message is accepted; a failing QUIT changes nothing.
                let _ = self.conn.quit().await;
                Ok(resp.message().collect::<Vec<_>>().join(" "))
            }
            // A negative reply (to MAIL, RCPT or DATA), or refused before anything was
            // written: the server did not take the message.
            Err(e) if e.status().is_some() || e.is_client() => Err(map_err(&self.server, e)),
            Err(e) => Err(SmtpError::Interrupted {
                server: self.server,
                reason: e.to_string(),
            }),
        }
    }

    /// lettre's `AsyncSmtpConnection::send`, step by step so a test can stop inside DATA.
    async fn transaction(
        &mut self,
        envelope: &Envelope,
        raw: &[u8],
    ) -> Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error> {
        let info = self.conn.server_info();
        let mut params = Vec::new();
        let addresses = envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .map(|a| a.as_ref());
        if addresses.clone().any(|a: &str| !a.is_ascii())
            && info.supports_feature(Extension::SmtpUtfEight)
        {
            params.push(MailParameter::SmtpUtfEight);
        }
        if !raw.is_ascii() && info.supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        // `command` and `message` turn a negative reply into an error.
        self.conn
            .command(Mail::new(envelope.from().cloned(), params))
            .await?;
        for to in envelope.to() {
            self.conn.command(Rcpt::new(to.clone(), vec![])).await?;
        }
        self.conn.command(Data).await?;
        crate::failpoint::hit("send:data").await;
        self.conn.message(raw).await
    }
}

fn envelope(built: &Built) -> Result<Envelope, SmtpError> {
    Envelope::new(
        Some(built.mail_from.parse().map_err(|e| SmtpError::Rejected {
            code: None,
            permanent: true,
            reason: format!("invalid sender {:?}: {e}", built.mail_from),
        })?),
        built
            .rcpt_to
            .iter()
            .map(|r| {
                r.parse().map_err(|e| SmtpError::Rejected {
                    code: None,
                    permanent: true,
                    reason: format!("invalid recipient {r:?}: {e}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    )
    .map_err(|e| SmtpError::Rejected {
        code: None,
        permanent: true,
        reason: e.to_string(),
    })
}

fn map_err(server: &str, e: lettre::transport::smtp::Error) -> SmtpError {
    let reason = e.to_string();
    let code = e.status().map(|c| {
        let s = c.to_string();
        s.parse::<u16>().unwrap_or(0)
    });
    let tls_level = caused_by_tls(&e);
    if !tls_level && e.status().is_none() && network_failed(&e) {
        // lettre calls a handshake the peer closed or reset a TLS error; it is the network.
        SmtpError::Connect {
            server: server.into(),
            reason,
        }
    } else if e.is_tls() || tls_level {
        SmtpError::Tls {
            server: server.into(),
            reason,
        }
    } else if code.is_some_and(|c| c == 535 || c == 534 || c == 530) {
        SmtpError::Auth {
            server: server.into(),
            reason,
        }
    } else if e.is_permanent() || e.is_transient() {
        SmtpError::Rejected {
            code,
            permanent: e.is_permanent(),
            reason,
        }
    } else if e.is_timeout() || e.is_transport_shutdown() || code.is_none() {
        SmtpError::Connect {
            server: server.into(),
            reason,
        }
    } else {
        SmtpError::Other { reason }
    }
}

/// True when the connection itself failed (closed, reset, aborted, refused, timed out): an
/// I/O error of that kind somewhere in the source chain.
fn network_failed(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind as K;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                K::UnexpectedEof
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::ConnectionRefused
                    | K::BrokenPipe
                    | K::TimedOut
                    | K::NotConnected
            )
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// True when a rustls error is somewhere in the source chain: lettre reports a failed handshake
/// (bad certificate) as a connection error, but for the user it is a TLS problem, not an outage.
fn caused_by_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_only_to_loopback_unless_opted_in() {
        assert!(plaintext_allowed("127.0.0.1", false));
        assert!(plaintext_allowed("::1", false));
        assert!(plaintext_allowed("localhost", false));
        assert!(!plaintext_allowed("smtp.example.com", false));
        assert!(plaintext_allowed("smtp.example.com", true));
    }
}
