//! v4: `email_bodies` (cached bodies) and `attachments` (metadata per email).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Emails {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum EmailBodies {
    Table,
    EmailId,
    TextBody,
    HtmlBody,
    Raw,
    Truncated,
    FetchedAt,
}

#[derive(DeriveIden)]
enum Attachments {
    Table,
    Id,
    EmailId,
    PartId,
    BlobId,
    FileName,
    MimeType,
    Size,
    Disposition,
    ContentId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(EmailBodies::Table)
                .col(big_integer(EmailBodies::EmailId).primary_key())
                .col(text_null(EmailBodies::TextBody))
                .col(text_null(EmailBodies::HtmlBody))
                .col(blob_null(EmailBodies::Raw))
                // True when the body policy cut the download short.
                .col(boolean(EmailBodies::Truncated).default(false))
                .col(timestamp_with_time_zone(EmailBodies::FetchedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_email_bodies_email")
                        .from(EmailBodies::Table, EmailBodies::EmailId)
                        .to(Emails::Table, Emails::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Attachments::Table)
                .col(big_pk_auto(Attachments::Id))
                .col(big_integer(Attachments::EmailId))
                // IMAP body part number ("2.1") or JMAP partId.
                .col(string_null(Attachments::PartId))
                .col(string_null(Attachments::BlobId))
                .col(text_null(Attachments::FileName))
                .col(string(Attachments::MimeType))
                .col(big_integer(Attachments::Size).default(0))
                .col(string_null(Attachments::Disposition))
                .col(string_null(Attachments::ContentId))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_attachments_email")
                        .from(Attachments::Table, Attachments::EmailId)
                        .to(Emails::Table, Emails::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_attachments_email")
                .table(Attachments::Table)
                .col(Attachments::EmailId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Attachments::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(EmailBodies::Table).to_owned())
            .await
    }
}
