//! The `email_mailboxes` table: which mailboxes an email is in (and its IMAP UID there).

use sea_orm::entity::prelude::*;

/// One membership of an email in a mailbox.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "email_mailboxes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub email_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub mailbox_id: i64,
    pub uidvalidity: Option<i64>,
    pub uid: Option<i64>,
    pub modseq: Option<i64>,
}

/// No relations are navigated through SeaORM; queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
