//! SQL text for statements whose size follows their rows: the `VALUES`
//! rows of a multi-row statement and the list of an `IN (…)`, in the `$N`
//! placeholders both backends accept; and statements built ahead of
//! running them ([`Stmt`]), so that a batch's end can run them one by one
//! or as the parts of one statement (`eventstore::batch_end`), there with
//! their rows passed as one JSON value ([`rows_as_json`]).

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

/// `stmt` with its rows passed as one JSON value (PostgreSQL): its
/// `VALUES` rows (as [`value_rows`] writes them) read from
/// `json_to_recordset($1::json)`, or its `IN (…)` list (as [`in_list`]
/// writes it) from `json_array_elements_text($1::json)`. So the
/// statement's text no longer follows its row count, and PostgreSQL plans
/// it once per connection rather than once per call. `None` when `stmt`
/// is of neither shape, or has placeholders elsewhere.
///
/// The rows are read `LIMIT $2` (their count): PostgreSQL guesses 100
/// rows for a JSON function, and with that guess the plan it keeps for
/// every call joins a table of a few thousand rows by scanning it whole
/// (docs/benchmarks.md, "Fifth pass"); under a limit it does not know, it
/// guesses a tenth of that, and looks each row up by its key.
pub fn rows_as_json(stmt: &Stmt) -> Option<Stmt> {
    let sql = &stmt.sql;
    if sql.matches('$').count() != stmt.args.len() || stmt.args.is_empty() {
        return None;
    }
    if let Some(at) = sql.find("VALUES ($1,").or_else(|| sql.find("VALUES ($1)")) {
        let start = at + "VALUES ".len();
        let first = &sql[start..start + sql[start..].find(')')?];
        let cols = first.matches('$').count();
        if !stmt.args.len().is_multiple_of(cols) {
            return None;
        }
        let rows = value_rows(stmt.args.len() / cols, cols, "");
        if !sql[start..].starts_with(&rows) {
            return None;
        }
        let defs: Vec<String> = stmt.args[..cols]
            .iter()
            .enumerate()
            .map(|(c, a)| format!("column{} {}", c + 1, sql_type(a)))
            .collect();
        let records: Vec<serde_json::Value> = stmt
            .args
            .chunks(cols)
            .map(|row| {
                serde_json::Value::Object(
                    row.iter()
                        .enumerate()
                        .map(|(c, a)| (format!("column{}", c + 1), json_of(a)))
                        .collect(),
                )
            })
            .collect();
        return Some(Stmt {
            sql: format!(
                "{}SELECT * FROM json_to_recordset($1::json) AS j({}) LIMIT $2{}",
                &sql[..at],
                defs.join(", "),
                &sql[start + rows.len()..]
            ),
            args: vec![
                Arg::Text(serde_json::Value::Array(records).to_string()),
                Arg::Int(stmt.args.len() as i64 / cols as i64),
            ],
        });
    }
    let list = format!("IN ({})", in_list(stmt.args.len()));
    let at = sql.find(&list)?;
    let cast = match sql_type(&stmt.args[0]) {
        "text" => "",
        _ => "::bigint",
    };
    let values: Vec<serde_json::Value> = stmt.args.iter().map(json_of).collect();
    Some(Stmt {
        sql: format!(
            "{}IN (SELECT value{cast} FROM json_array_elements_text($1::json) LIMIT $2){}",
            &sql[..at],
            &sql[at + list.len()..]
        ),
        args: vec![
            Arg::Text(serde_json::Value::Array(values).to_string()),
            Arg::Int(stmt.args.len() as i64),
        ],
    })
}

/// A read of the rows whose key is one of `ids`: `sql` given the `IN (…)`
/// list's placeholders. On PostgreSQL the list is one JSON value
/// ([`rows_as_json`]), so a batch's reads are planned once, not once per
/// count.
pub fn keyed_read(
    conn: &sqlx::AnyConnection,
    sql: impl Fn(&str) -> String,
    ids: &[uuid::Uuid],
) -> Stmt {
    let stmt = Stmt {
        sql: sql(&in_list(ids.len())),
        args: ids.iter().map(|id| Arg::Text(id.to_string())).collect(),
    };
    if conn.backend_name() == "PostgreSQL" {
        rows_as_json(&stmt).unwrap_or(stmt)
    } else {
        stmt
    }
}

/// The PostgreSQL type a value is bound as.
fn sql_type(a: &Arg) -> &'static str {
    match a {
        Arg::Text(_) | Arg::OptText(_) => "text",
        Arg::Int(_) | Arg::OptInt(_) => "bigint",
    }
}

fn json_of(a: &Arg) -> serde_json::Value {
    match a {
        Arg::Text(v) => v.as_str().into(),
        Arg::Int(v) => (*v).into(),
        Arg::OptText(v) => v.as_deref().into(),
        Arg::OptInt(v) => (*v).into(),
    }
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

    #[test]
    fn rows_as_json_passes_values_rows_and_in_lists_as_one_value() {
        let values = Stmt {
            sql: format!(
                "UPDATE t SET a = v.column2 FROM (VALUES {}) AS v WHERE t.id = v.column1",
                value_rows(2, 2, "")
            ),
            args: vec![
                Arg::from("x\"y"),
                Arg::OptInt(None),
                Arg::from("z"),
                Arg::OptInt(Some(7)),
            ],
        };
        assert_eq!(
            rows_as_json(&values),
            Some(Stmt {
                sql: "UPDATE t SET a = v.column2 FROM (SELECT * FROM json_to_recordset($1::json) \
                      AS j(column1 text, column2 bigint) LIMIT $2) AS v WHERE t.id = v.column1"
                    .into(),
                args: vec![
                    Arg::from(r#"[{"column1":"x\"y","column2":null},{"column1":"z","column2":7}]"#),
                    Arg::Int(2)
                ],
            })
        );
        let insert = Stmt {
            sql: format!(
                "INSERT INTO t (a) VALUES {} RETURNING id",
                value_rows(1, 1, "")
            ),
            args: vec![Arg::Int(3)],
        };
        assert_eq!(
            rows_as_json(&insert).map(|s| s.sql),
            Some(
                "INSERT INTO t (a) SELECT * FROM json_to_recordset($1::json) AS j(column1 bigint) \
                 LIMIT $2 RETURNING id"
                    .into()
            )
        );
        let list = Stmt {
            sql: format!("DELETE FROM t WHERE id IN ({})", in_list(2)),
            args: vec![Arg::from("a"), Arg::from("b")],
        };
        assert_eq!(
            rows_as_json(&list),
            Some(Stmt {
                sql: "DELETE FROM t WHERE id IN \
                      (SELECT value FROM json_array_elements_text($1::json) LIMIT $2)"
                    .into(),
                args: vec![Arg::from(r#"["a","b"]"#), Arg::Int(2)],
            })
        );
        // A placeholder outside the rows: left as it is.
        let other = Stmt {
            sql: format!("UPDATE t SET a = $3 WHERE id IN ({})", in_list(2)),
            args: vec![Arg::from("a"), Arg::from("b"), Arg::Int(1)],
        };
        assert_eq!(rows_as_json(&other), None);
    }
}
