//! Hand-written SQL with bound values, for the queries the query builder cannot say (FTS5
//! MATCH, tsquery): `?` placeholders on SQLite, `$n` on PostgreSQL.

use sea_orm::{DbBackend, Statement, Value};

/// A statement under construction.
pub(crate) struct Sql {
    backend: DbBackend,
    text: String,
    values: Vec<Value>,
}

impl Sql {
    pub(crate) fn new(backend: DbBackend) -> Self {
        Self {
            backend,
            text: String::new(),
            values: Vec::new(),
        }
    }

    pub(crate) fn is_postgres(&self) -> bool {
        self.backend == DbBackend::Postgres
    }

    pub(crate) fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    /// Appends a placeholder for `v`.
    pub(crate) fn bind(&mut self, v: impl Into<Value>) -> &mut Self {
        self.values.push(v.into());
        placeholder(self.backend, &mut self.text, self.values.len());
        self
    }

    pub(crate) fn build(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }
}

/// Appends the placeholder of the `n`th bound value (1-based): `?` on SQLite, `$n` on
/// PostgreSQL. For statements whose text is built apart from their values (threading's
/// recurring look-ups and upserts).
pub(crate) fn placeholder(backend: DbBackend, text: &mut String, n: usize) {
    if backend == DbBackend::Postgres {
        text.push('$');
        text.push_str(&n.to_string());
    } else {
        text.push('?');
    }
}
