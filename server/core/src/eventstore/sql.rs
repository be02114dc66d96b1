//! SQL text for statements whose size follows their rows: the `VALUES`
//! rows of a multi-row statement and the list of an `IN (…)`, in the `$N`
//! placeholders both backends accept.

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
}
