//! v18: local threading records merges instead of rewriting links. Until v17 a merge of two
//! threads renamed every link of the losing thread, which needed an index of `thread_links` by
//! thread; keeping that index up to date was about 40 % of threading's cost in a first sync
//! (links are written for nearly every message, merges are rare). From v18 a merge is one row
//! of `thread_merges` (loser -> winner, kept flat: a winner is never itself a loser), a link
//! look-up resolves its thread through it, and the index goes.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum ThreadLinks {
    Table,
    AccountId,
    ThreadId,
}

#[derive(DeriveIden)]
enum ThreadMerges {
    Table,
    AccountId,
    Loser,
    Winner,
}

const LINKS_BY_THREAD: &str = "ix_thread_links_thread";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ThreadMerges::Table)
                .col(big_integer(ThreadMerges::AccountId))
                .col(string(ThreadMerges::Loser))
                .col(string(ThreadMerges::Winner))
                .primary_key(
                    Index::create()
                        .col(ThreadMerges::AccountId)
                        .col(ThreadMerges::Loser),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_thread_merges_account")
                        .from(ThreadMerges::Table, ThreadMerges::AccountId)
                        .to(Accounts::Table, Accounts::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // A new merge re-points the merges that named its loser as their winner.
        m.create_index(
            Index::create()
                .name("ix_thread_merges_winner")
                .table(ThreadMerges::Table)
                .col(ThreadMerges::AccountId)
                .col(ThreadMerges::Winner)
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name(LINKS_BY_THREAD)
                .table(ThreadLinks::Table)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // v17 kept every link on its current thread: apply the merges to the links.
        m.get_connection()
            .execute_unprepared(
                "UPDATE thread_links SET thread_id = (SELECT winner FROM thread_merges mg \
                 WHERE mg.account_id = thread_links.account_id \
                 AND mg.loser = thread_links.thread_id) \
                 WHERE EXISTS (SELECT 1 FROM thread_merges mg \
                 WHERE mg.account_id = thread_links.account_id \
                 AND mg.loser = thread_links.thread_id)",
            )
            .await?;
        m.drop_table(Table::drop().table(ThreadMerges::Table).to_owned())
            .await?;
        m.create_index(
            Index::create()
                .name(LINKS_BY_THREAD)
                .table(ThreadLinks::Table)
                .col(ThreadLinks::AccountId)
                .col(ThreadLinks::ThreadId)
                .to_owned(),
        )
        .await
    }
}
