//! The bench's two scale scenarios of issue 18: the same first sync into PostgreSQL (a fresh
//! database per run), and an account whose LIST names 100,000 mailboxes.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use mailsync_testkit::unique_name;

use super::{Ctx, S_FIRST_PG, S_LIST};

/// The PostgreSQL first sync without the search index (its noting triggers dropped).
pub(super) const NO_INDEX_PG: &str = "no search index: mailsync --bodies all (PostgreSQL)";

/// Drops PostgreSQL's search-noting triggers (schema v13 on, `m0015_search_deferred`): the
/// sync then writes nothing for the index, and its indexing loops find nothing to do.
const PG_DROP_SEARCH_TRIGGERS: &str = "DROP TRIGGER email_search_ins ON emails; \
     DROP TRIGGER email_search_upd ON emails; \
     DROP TRIGGER email_search_bodies_ins ON email_bodies; \
     DROP TRIGGER email_search_bodies_del ON email_bodies; \
     DROP TRIGGER email_search_bodies_upd ON email_bodies";

/// The single value `sql` returns (`psql` as the fleet bench runs it).
fn psql(url: &str, sql: &str) -> Result<String> {
    Ok(super::fleet::psql(url, sql)?
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next())
        .unwrap_or_default())
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db}"),
        None => format!("{url}/{db}"),
    }
}

impl Ctx {
    /// The first sync with all bodies, into a fresh PostgreSQL database each run (the
    /// server's own cost of creating it is outside the timing); then the same with the search
    /// index's triggers dropped, for what keeping the index costs there (issue 16).
    pub(super) fn first_sync_pg(&mut self, size: &str, user: &str, log: &Path) -> Result<()> {
        self.first_sync_pg_with(size, user, log, true)?;
        self.first_sync_pg_with(size, user, log, false)
    }

    fn first_sync_pg_with(
        &mut self,
        size: &str,
        user: &str,
        log: &Path,
        index: bool,
    ) -> Result<()> {
        let admin = self.s.pg_url().to_owned();
        let mut v = Vec::new();
        let mut rows = String::new();
        for _ in 0..self.runs {
            let name = unique_name("bench_pg").replace('-', "_");
            psql(&admin, &format!("CREATE DATABASE {name}"))?;
            let url = with_database(&admin, &name);
            let run = (|| {
                self.add_imap_url(&url, user, self.port(), "all")?;
                if !index {
                    psql(&url, PG_DROP_SEARCH_TRIGGERS)?;
                }
                let c = self.ms_url(&url).args(["sync", "--once"]);
                self.note_cmd("mailsync first sync into PostgreSQL", &c);
                let sample = c.timed(log)?;
                let emails = psql(&url, "SELECT count(*) FROM emails")?;
                let bodies = psql(&url, "SELECT count(*) FROM email_bodies")?;
                Ok::<_, anyhow::Error>((sample, format!("{emails} rows, {bodies} bodies")))
            })();
            psql(
                &admin,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )?;
            let (sample, counted) = run?;
            v.push(sample);
            rows = counted;
        }
        let (tool, note) = if index {
            ("mailsync --bodies all (PostgreSQL)", rows)
        } else {
            (NO_INDEX_PG, format!("{rows}; search triggers dropped"))
        };
        self.push(size, S_FIRST_PG, tool, v, note);
        Ok(())
    }

    /// An account with `n` mailboxes (empty Maildir++ folders written straight into Dovecot's
    /// mail root): the raw `LIST … RETURN (STATUS …)` against mailsync's first sync, which
    /// lists them all and then refuses the account when `n` is over its mailbox cap.
    pub(super) fn list(&mut self, n: usize) -> Result<()> {
        println!("== LIST: {n} mailboxes");
        let user = format!("t_{}", unique_name("benchlist"));
        let t = Instant::now();
        let none: [&[u8]; 0] = [];
        mailsync_testkit::maildir_populate(
            self.s.dovecot_conf(),
            self.s.dovecot_mail_root(),
            &user,
            "INBOX",
            none,
        )?;
        let root = self.s.dovecot_mail_root().to_path_buf();
        let owner = fs::metadata(&root).with_context(|| root.display().to_string())?;
        let maildir = root.join(&user).join("Maildir");
        for i in 0..n {
            let b = maildir.join(format!(".box{i:06}"));
            for d in [b.clone(), b.join("cur"), b.join("new"), b.join("tmp")] {
                fs::create_dir(&d).with_context(|| d.display().to_string())?;
                std::os::unix::fs::chown(&d, Some(owner.uid()), Some(owner.gid()))?;
            }
        }
        println!(
            "  created {n} mailboxes for {user} in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let size = format!("{n} mailboxes");
        // Dovecot opens every mailbox's index on the first STATUS: warm it, as for the corpus.
        let floor = self.floor(&user, "list", &[]);
        floor.run()?;
        self.note_cmd("raw floor, LIST with STATUS", &floor);
        let v = self.repeat(self.runs, &floor, |_| Ok(()))?;
        self.push(
            &size,
            S_LIST,
            "raw floor (LIST RETURN STATUS)",
            v,
            String::new(),
        );
        // The names alone (what a client needs to count them, and what mailsync asks first on
        // an account's first listing).
        let plain = self.floor(&user, "list-plain", &[]);
        self.note_cmd("raw floor, plain LIST", &plain);
        let v = self.repeat(self.runs, &plain, |_| Ok(()))?;
        self.push(&size, S_LIST, "raw floor (plain LIST)", v, String::new());
        // How mailsync ends (over the cap: refused, with its exit code and error line).
        let probe = self.fresh_dir("ms-list")?.join("db.sqlite");
        self.add_imap(&probe, &user, self.port(), "none")?;
        let (code, line) = self.ms(&probe).args(["sync", "--once"]).outcome()?;
        let log = self.fresh_dir("log")?;
        let mut v = Vec::new();
        for _ in 0..self.runs {
            let db = self.fresh_dir("ms-list")?.join("db.sqlite");
            self.add_imap(&db, &user, self.port(), "none")?;
            let c = self.ms(&db).args(["sync", "--once"]).expect_exit(code);
            self.note_cmd("mailsync first sync, many mailboxes", &c);
            v.push(c.timed(&log)?);
        }
        let note = if code == 0 {
            "synced".to_owned()
        } else {
            format!("exit {code}: {line}")
        };
        self.push(&size, S_LIST, "mailsync sync --once", v, note);
        let _ = fs::remove_dir_all(root.join(&user));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            super::with_database("postgres://postgres@127.0.0.1:5432/test", "b1"),
            "postgres://postgres@127.0.0.1:5432/b1"
        );
    }
}
