//! v3: the `emails` table and `email_mailboxes`, the membership of an email in mailboxes.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Mailboxes {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Emails {
    Table,
    Id,
    AccountId,
    RemoteId,
    BlobId,
    ThreadId,
    MessageId,
    InReplyTo,
    References,
    Subject,
    FromAddr,
    ToAddr,
    CcAddr,
    BccAddr,
    ReplyTo,
    SentAt,
    ReceivedAt,
    Size,
    Seen,
    Flagged,
    Answered,
    Draft,
    Keywords,
    Preview,
    HasAttachment,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum EmailMailboxes {
    Table,
    EmailId,
    MailboxId,
    Uidvalidity,
    Uid,
    Modseq,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Emails::Table)
                .col(big_pk_auto(Emails::Id))
                .col(big_integer(Emails::AccountId))
                // JMAP: the Email id. IMAP: "<mailbox id>/<uidvalidity>/<uid>", one row per copy.
                .col(string(Emails::RemoteId))
                .col(string_null(Emails::BlobId))
                .col(string_null(Emails::ThreadId))
                // Without angle brackets.
                .col(string_null(Emails::MessageId))
                .col(text_null(Emails::InReplyTo))
                .col(text_null(Emails::References))
                .col(text_null(Emails::Subject))
                // Address lists as JSON arrays of {"name","email"}.
                .col(text(Emails::FromAddr).default("[]"))
                .col(text(Emails::ToAddr).default("[]"))
                .col(text(Emails::CcAddr).default("[]"))
                .col(text(Emails::BccAddr).default("[]"))
                .col(text(Emails::ReplyTo).default("[]"))
                .col(timestamp_with_time_zone_null(Emails::SentAt))
                .col(timestamp_with_time_zone(Emails::ReceivedAt))
                .col(big_integer(Emails::Size).default(0))
                .col(boolean(Emails::Seen).default(false))
                .col(boolean(Emails::Flagged).default(false))
                .col(boolean(Emails::Answered).default(false))
                .col(boolean(Emails::Draft).default(false))
                // Other keywords, a JSON array of strings.
                .col(text(Emails::Keywords).default("[]"))
                .col(text_null(Emails::Preview))
                .col(boolean(Emails::HasAttachment).default(false))
                .col(timestamp_with_time_zone(Emails::CreatedAt))
                .col(timestamp_with_time_zone(Emails::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_emails_account")
                        .from(Emails::Table, Emails::AccountId)
                        .to(Accounts::Table, Accounts::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        for (name, cols, unique) in [
            (
                "ux_emails_account_remote",
                vec![Emails::AccountId, Emails::RemoteId],
                true,
            ),
            (
                "ix_emails_account_received",
                vec![Emails::AccountId, Emails::ReceivedAt],
                false,
            ),
            (
                "ix_emails_account_message_id",
                vec![Emails::AccountId, Emails::MessageId],
                false,
            ),
            (
                "ix_emails_account_thread",
                vec![Emails::AccountId, Emails::ThreadId],
                false,
            ),
        ] {
            let mut idx = Index::create();
            idx.name(name).table(Emails::Table);
            for c in cols {
                idx.col(c);
            }
            if unique {
                idx.unique();
            }
            m.create_index(idx.to_owned()).await?;
        }

        m.create_table(
            Table::create()
                .table(EmailMailboxes::Table)
                .col(big_integer(EmailMailboxes::EmailId))
                .col(big_integer(EmailMailboxes::MailboxId))
                // IMAP identity of this copy; NULL for JMAP (and while a local move is pending).
                .col(big_integer_null(EmailMailboxes::Uidvalidity))
                .col(big_integer_null(EmailMailboxes::Uid))
                .col(big_integer_null(EmailMailboxes::Modseq))
                .primary_key(
                    Index::create()
                        .col(EmailMailboxes::EmailId)
                        .col(EmailMailboxes::MailboxId),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_email_mailboxes_email")
                        .from(EmailMailboxes::Table, EmailMailboxes::EmailId)
                        .to(Emails::Table, Emails::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_email_mailboxes_mailbox")
                        .from(EmailMailboxes::Table, EmailMailboxes::MailboxId)
                        .to(Mailboxes::Table, Mailboxes::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_email_mailboxes_mailbox_uid")
                .table(EmailMailboxes::Table)
                .col(EmailMailboxes::MailboxId)
                .col(EmailMailboxes::Uid)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(EmailMailboxes::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Emails::Table).to_owned())
            .await
    }
}
