//! The three-way comparison behind the conflict dialog. Each field has the
//! value the editor started from (`base`), the one stored now (`theirs`)
//! and the editor's own (`mine`). Pure, so it is tested natively.

/// A record's editable fields as text, in the editor's order.
pub type Values = Vec<(String, String)>;

/// The value of `field` in `values` ("" when absent).
pub fn value<'a>(values: &'a [(String, String)], field: &str) -> &'a str {
    values
        .iter()
        .find(|(f, _)| f == field)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// One row of the conflict dialog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRow {
    pub field: String,
    pub base: String,
    pub theirs: String,
    pub mine: String,
}

impl FieldRow {
    pub fn i_changed(&self) -> bool {
        self.mine != self.base
    }
    pub fn they_changed(&self) -> bool {
        self.theirs != self.base
    }
    /// Both changed it, to different values: the person chooses.
    pub fn clash(&self) -> bool {
        self.i_changed() && self.they_changed() && self.mine != self.theirs
    }
}

/// The fields that differ anywhere (changed by me, by them, or both), in
/// the order of `fields`.
pub fn rows(
    fields: &[&str],
    base: &[(String, String)],
    theirs: &[(String, String)],
    mine: &[(String, String)],
) -> Vec<FieldRow> {
    fields
        .iter()
        .map(|f| FieldRow {
            field: f.to_string(),
            base: value(base, f).to_string(),
            theirs: value(theirs, f).to_string(),
            mine: value(mine, f).to_string(),
        })
        .filter(|r| r.i_changed() || r.they_changed())
        .collect()
}

/// Mine re-applied onto theirs: a field only I changed takes mine, one
/// only they changed keeps theirs, and one we both changed takes what
/// `keep_mine` says for it. Returns the whole form and the fields that
/// now differ from what is stored (the edit to send).
pub fn reapply(
    fields: &[&str],
    base: &[(String, String)],
    theirs: &[(String, String)],
    mine: &[(String, String)],
    keep_mine: impl Fn(&str) -> bool,
) -> (Values, Vec<String>) {
    let mut merged = Vec::with_capacity(fields.len());
    let mut changed = Vec::new();
    for f in fields {
        let (b, t, m) = (value(base, f), value(theirs, f), value(mine, f));
        let take_mine = m != b && (t == b || keep_mine(f));
        let v = if take_mine { m } else { t };
        if v != t {
            changed.push(f.to_string());
        }
        merged.push((f.to_string(), v.to_string()));
    }
    (merged, changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(pairs: &[(&str, &str)]) -> Values {
        pairs
            .iter()
            .map(|(f, v)| (f.to_string(), v.to_string()))
            .collect()
    }

    const FIELDS: [&str; 3] = ["name", "location", "notes"];

    #[test]
    fn fields_only_one_side_changed_merge_cleanly() {
        let base = vals(&[("name", "A"), ("location", "Hall"), ("notes", "")]);
        let theirs = vals(&[("name", "B's name"), ("location", "Hall"), ("notes", "")]);
        let mine = vals(&[("name", "A"), ("location", "Lobby"), ("notes", "")]);
        let (merged, changed) = reapply(&FIELDS, &base, &theirs, &mine, |_| panic!("no clash"));
        assert_eq!(
            merged,
            vals(&[("name", "B's name"), ("location", "Lobby"), ("notes", "")])
        );
        assert_eq!(changed, vec!["location".to_string()]);
        let rows = rows(&FIELDS, &base, &theirs, &mine);
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| !r.clash()));
    }

    #[test]
    fn a_field_both_changed_is_the_persons_choice() {
        let base = vals(&[("name", "A"), ("location", ""), ("notes", "")]);
        let theirs = vals(&[("name", "Theirs"), ("location", ""), ("notes", "")]);
        let mine = vals(&[("name", "Mine"), ("location", ""), ("notes", "")]);
        assert!(rows(&FIELDS, &base, &theirs, &mine)[0].clash());
        let (merged, changed) = reapply(&FIELDS, &base, &theirs, &mine, |f| f == "name");
        assert_eq!(value(&merged, "name"), "Mine");
        assert_eq!(changed, vec!["name".to_string()]);
        let (merged, changed) = reapply(&FIELDS, &base, &theirs, &mine, |_| false);
        assert_eq!(value(&merged, "name"), "Theirs");
        assert!(changed.is_empty());
    }

    #[test]
    fn the_same_change_on_both_sides_is_no_clash() {
        let base = vals(&[("name", "A")]);
        let both = vals(&[("name", "B")]);
        assert!(!rows(&["name"], &base, &both, &both)[0].clash());
        let (_, changed) = reapply(&["name"], &base, &both, &both, |_| true);
        assert!(changed.is_empty());
    }
}
