//! The `attachments` table: attachment metadata per email.

use sea_orm::entity::prelude::*;

/// Metadata of one attachment.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "attachments")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub email_id: i64,
    pub part_id: Option<String>,
    pub blob_id: Option<String>,
    pub file_name: Option<String>,
    pub mime_type: String,
    pub size: i64,
    pub disposition: Option<String>,
    pub content_id: Option<String>,
}

/// No relations are navigated through SeaORM; queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
