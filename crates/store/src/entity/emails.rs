//! The `emails` table.

use sea_orm::entity::prelude::*;

/// An email row. Address lists and keywords are JSON text.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "emails")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: i64,
    pub remote_id: String,
    pub blob_id: Option<String>,
    pub thread_id: Option<String>,
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Option<String>,
    pub subject: Option<String>,
    pub from_addr: String,
    pub to_addr: String,
    pub cc_addr: String,
    pub bcc_addr: String,
    pub reply_to: String,
    pub sent_at: Option<DateTimeUtc>,
    pub received_at: DateTimeUtc,
    pub size: i64,
    pub seen: bool,
    pub flagged: bool,
    pub answered: bool,
    pub draft: bool,
    pub keywords: String,
    pub preview: Option<String>,
    pub has_attachment: bool,
    /// `email_bodies` holds this email's body (kept by triggers on that table, schema v14).
    pub body_cached: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// No relations are navigated through SeaORM; queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
