//! SQL text for statements whose size follows their rows: the `VALUES`
//! rows of a multi-row statement and the list of an `IN (…)`, in the `$N`
//! placeholders both backends accept; and statements built ahead of
//! running them ([`Stmt`]), so that a batch's end can run them one by one
//! or as the parts of one statement (`eventstore::batch_end`).

use sqlx::{any::AnyArguments, query::Query, Any};

/// A value bound to a statement built ahead of running it.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    Text(String),
    Int(i64),
    OptText(Option<String>),
    OptInt(Option<i64>),
}

impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_string())
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::OptText(v)
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Arg::OptText(v.map(str::to_string))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::OptInt(v)
    }
}

/// A statement with its values, numbered `$1` on.
#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    pub sql: String,
    pub args: Vec<Arg>,
}

impl Stmt {
    /// The statement, ready to run.
    pub fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        bind_all(sqlx::query(&self.sql), &self.args)
    }
}

/// `args` bound to `query`, in order.
pub fn bind_all<'q>(
    mut query: Query<'q, Any, AnyArguments<'q>>,
    args: &'q [Arg],
) -> Query<'q, Any, AnyArguments<'q>> {
    for a in args {
        query = match a {
            Arg::Text(v) => query.bind(v.as_str()),
            Arg::Int(v) => query.bind(*v),
            Arg::OptText(v) => query.bind(v.as_deref()),
            Arg::OptInt(v) => query.bind(*v),
        };
    }
    query
}

/// `sql` with each `$N` made `$(N + offset)`: a statement's placeholders
/// once it follows `offset` values of others. (The statements built here
/// have no `$` but in placeholders.)
pub fn renumber(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut n = String::new();
        while let Some((_, d)) = chars.peek().copied().filter(|(_, d)| d.is_ascii_digit()) {
            n.push(d);
            chars.next();
        }
        match n.parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&n),
        }
    }
    out
}

/// `($1, $2), ($3, $4)` for `rows` = 2, `cols` = 2; `tail` is appended
/// inside each row (a literal column).
pub fn value_rows(rows: usize, cols: usize, tail: &str) -> String {
    (0..rows)
        .map(|r| {
            let params: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({}{tail})", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `$1, $2, $3` for `n` = 3: the list of an `IN (…)`.
pub fn in_list(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_rows_number_parameters_row_by_row() {
        assert_eq!(value_rows(2, 1, ", 1"), "($1, 1), ($2, 1)");
        assert_eq!(value_rows(2, 3, ""), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(in_list(3), "$1, $2, $3");
    }

    #[test]
    fn renumber_shifts_every_placeholder_and_nothing_else() {
        assert_eq!(
            renumber("INSERT INTO t VALUES ($1, $12, 'a') WHERE x = $3", 10),
            "INSERT INTO t VALUES ($11, $22, 'a') WHERE x = $13"
        );
        assert_eq!(renumber("SELECT 1", 5), "SELECT 1");
    }
}
