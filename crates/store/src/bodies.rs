//! Cached email bodies (text, HTML, optionally the raw message).

use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, EntityTrait, Set};

use crate::entity::email_bodies as b;
use crate::{EmailId, StoreError};

/// The cached body of an email.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Body {
    /// The text/plain body (or text converted from HTML).
    pub text: Option<String>,
    /// The text/html body.
    pub html: Option<String>,
    /// The raw RFC 5322 message, when kept.
    pub raw: Option<Vec<u8>>,
    /// True when the download was cut short by the body policy.
    pub truncated: bool,
}

/// Stores (or replaces) the body of an email.
pub async fn put<C: ConnectionTrait>(c: &C, id: EmailId, body: &Body) -> Result<(), StoreError> {
    let model = b::ActiveModel {
        email_id: Set(id.0),
        text_body: Set(body.text.clone()),
        html_body: Set(body.html.clone()),
        raw: Set(body.raw.clone()),
        truncated: Set(body.truncated),
        fetched_at: Set(crate::now()),
    };
    b::Entity::insert(model)
        .on_conflict(
            OnConflict::column(b::Column::EmailId)
                .update_columns([
                    b::Column::TextBody,
                    b::Column::HtmlBody,
                    b::Column::Raw,
                    b::Column::Truncated,
                    b::Column::FetchedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(c)
        .await?;
    Ok(())
}

/// The cached body, if any.
pub async fn get<C: ConnectionTrait>(c: &C, id: EmailId) -> Result<Option<Body>, StoreError> {
    Ok(b::Entity::find_by_id(id.0).one(c).await?.map(|m| Body {
        text: m.text_body,
        html: m.html_body,
        raw: m.raw,
        truncated: m.truncated,
    }))
}
