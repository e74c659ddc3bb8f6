//! Set-based statements. A projection writes one row per statement, which keeps it simple
//! to read, but on PostgreSQL each statement costs a Bind/Execute and an executor start,
//! millions of times over in a rebuild. So the single-row `INSERT`s of one shape in a
//! batch are sent as multi-row `INSERT .. VALUES (..), (..)`, when that cannot change
//! the result:
//!
//! - only `INSERT INTO t (cols) VALUES (exprs)` with an optional `ON CONFLICT` clause,
//!   no sub-query and no parameter outside the row, is merged;
//! - a statement joins the open group of its shape; any other statement first sends
//!   every open group that uses one of its tables (as a target or in a sub-query). Open
//!   groups therefore use disjoint tables, and each row only moves past statements on
//!   other tables, which commute with it;
//! - rows keep their order within a group. PostgreSQL refuses a row that an
//!   `ON CONFLICT .. DO UPDATE` statement already touched, so a row whose conflict key
//!   is already in its group sends the group first;
//! - unless the statement's `DO UPDATE` says how two rows fold into one, as running them
//!   one after the other would have: one that only adds (`SET c = t.c + excluded.c, ..`)
//!   adds the row into the group's row with that key (a batch's thousand likes of one
//!   video are one row); one that only moves forward (`SET c = excluded.c, .. WHERE
//!   excluded.k > t.k`) keeps the row with the greater `k` (a conversation's last
//!   message). The values folded are `$n` integers.
//!
//! SQLite gets the sums but one row per statement (a multi-row statement there needs a
//! statement journal, which cost as much as it saved).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::{SqlValue, Statement};

/// Rows per merged statement, largest first; a group is sent in as few statements of
/// these sizes as add up to it, so an engine prepares at most this many texts per shape.
const SIZES: [usize; 9] = [256, 128, 64, 32, 16, 8, 4, 2, 1];

/// What is known about one statement text (with a generation's names), worked out once.
#[derive(Debug)]
pub struct Shape {
    /// The text as it runs.
    pub sql: Arc<str>,
    /// The names the statement uses as tables.
    tables: Vec<String>,
    /// How to merge it with statements of the same text, if it can be.
    rows: Option<RowInsert>,
}

/// A single-row `INSERT .. VALUES (..)`, split around its row.
#[derive(Debug)]
struct RowInsert {
    /// Up to and including `VALUES `.
    head: String,
    row: Vec<Part>,
    /// After the row: empty or an `ON CONFLICT` clause.
    tail: String,
    /// Parameters per row (`$1` to `$params`).
    params: usize,
    /// The parameters (0-based) of the conflict target of a `DO UPDATE`.
    key: Option<Vec<usize>>,
    /// How two rows with one conflict key fold into one, if they can.
    fold: Option<Fold>,
    /// Merged texts by number of rows.
    sized: Mutex<HashMap<usize, Arc<str>>>,
}

/// How a `DO UPDATE` folds two rows with one conflict key (parameters 0-based).
#[derive(Debug, PartialEq)]
enum Fold {
    /// `SET c = t.c + excluded.c, ..`: the values of these parameters add up.
    Add(Vec<usize>),
    /// `SET c = excluded.c, .. WHERE excluded.k > t.k` with `k` among the columns set:
    /// the row with the greater `k` (the first of equal ones) gives the values set.
    Max { k: usize, set: Vec<usize> },
}

#[derive(Debug)]
enum Part {
    Text(String),
    Param(usize),
}

impl Shape {
    /// `sql` is the statement as it runs; `tables` names the tables it uses.
    pub fn new(sql: String, tables: Vec<String>) -> Self {
        let rows = RowInsert::parse(&sql);
        Self { sql: sql.into(), tables, rows }
    }

    /// Whether the statement uses one of `tables` (physical names).
    pub fn uses(&self, tables: &[String]) -> bool {
        self.tables.iter().any(|t| tables.contains(t))
    }

    fn shares_a_table(&self, other: &Shape) -> bool {
        self.tables.iter().any(|t| other.tables.contains(t))
    }
}

impl RowInsert {
    fn parse(sql: &str) -> Option<Self> {
        let trimmed = sql.trim_start();
        if !starts_with_words(trimmed, &["INSERT", "INTO"]) || has_word(sql, "SELECT") || has_word(sql, "RETURNING") {
            return None;
        }
        let values = find_word(trimmed, "VALUES")?;
        let open = values + trimmed[values..].find('(')?;
        if !trimmed[values + "VALUES".len()..open].trim().is_empty() {
            return None;
        }
        let close = open + matching_paren(&trimmed[open..])?;
        let (head, row, tail) = (&trimmed[..open], &trimmed[open + 1..close], &trimmed[close + 1..]);
        if head.contains('$') || tail.contains('$') {
            return None;
        }
        let tail_trimmed = tail.trim();
        let key = if tail_trimmed.is_empty() {
            None
        } else if starts_with_words(tail_trimmed, &["ON", "CONFLICT"]) {
            if has_word(tail_trimmed, "UPDATE") { Some(conflict_key(head, row, tail_trimmed)?) } else { None }
        } else {
            return None;
        };
        let fold = key.as_ref().and_then(|_| fold(head, row, tail_trimmed));
        let parts = parts(row)?;
        let params = parts.iter().filter_map(|p| if let Part::Param(n) = p { Some(*n) } else { None }).max()?;
        Some(Self { head: head.to_owned(), row: parts, tail: tail.to_owned(), params, key, fold, sized: Mutex::default() })
    }

    /// Folds row `from` into row `into` (one row's parameters each), as running the
    /// statement for both would; false, changing nothing, when it cannot.
    fn fold_into(&self, into: &mut [SqlValue], from: &[SqlValue]) -> bool {
        let int = |value: &SqlValue| if let SqlValue::Int(v) = value { Some(*v) } else { None };
        match &self.fold {
            None => false,
            Some(Fold::Add(adds)) => {
                let sum = |into: &[SqlValue], i: usize| int(&into[i])?.checked_add(int(&from[i])?);
                if adds.iter().any(|&i| sum(into, i).is_none()) {
                    return false;
                }
                for &i in adds {
                    into[i] = SqlValue::Int(sum(into, i).expect("checked above"));
                }
                true
            }
            Some(Fold::Max { k, set }) => {
                let (Some(kept), Some(new)) = (int(&into[*k]), int(&from[*k])) else { return false };
                if new > kept {
                    for &i in set {
                        into[i] = from[i].clone();
                    }
                }
                true
            }
        }
    }

    /// The row's conflict key, where two rows of one group must not share it.
    fn key(&self, params: &[SqlValue]) -> Option<Vec<SqlValue>> {
        Some(self.key.as_ref()?.iter().map(|i| params[*i].clone()).collect())
    }

    /// The text inserting `rows` rows.
    fn sql(&self, rows: usize) -> Arc<str> {
        let mut sized = self.sized.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        sized
            .entry(rows)
            .or_insert_with(|| {
                let mut sql = self.head.clone();
                for r in 0..rows {
                    sql.push_str(if r == 0 { "(" } else { ", (" });
                    for part in &self.row {
                        match part {
                            Part::Text(text) => sql.push_str(text),
                            Part::Param(n) => {
                                sql.push('$');
                                sql.push_str(&(n + r * self.params).to_string());
                            }
                        }
                    }
                    sql.push(')');
                }
                sql.push_str(&self.tail);
                sql.into()
            })
            .clone()
    }
}

/// The row split into text and `$n` parameters; None if a quote makes that unsafe.
fn parts(row: &str) -> Option<Vec<Part>> {
    if row.contains('\'') || row.contains('"') {
        return None;
    }
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut chars = row.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut n = 0usize;
            while let Some(digit) = chars.peek().and_then(|d| d.to_digit(10)) {
                n = n * 10 + digit as usize;
                chars.next();
            }
            if n == 0 {
                return None;
            }
            parts.push(Part::Text(std::mem::take(&mut text)));
            parts.push(Part::Param(n));
        } else {
            text.push(c);
        }
    }
    parts.push(Part::Text(text));
    Some(parts)
}

/// The parameters holding the conflict target's columns: `ON CONFLICT (a, b)` with `a`
/// and `b` in the column list, given as `$n` (a constant is the same in every row).
fn conflict_key(head: &str, row: &str, tail: &str) -> Option<Vec<usize>> {
    let columns = list(&head[head.find('(')? + 1..head.rfind(')')?]);
    let exprs = list(row);
    let after = &tail[tail.find('(')? + 1..];
    let target = list(&after[..after.find(')')?]);
    let mut key = Vec::new();
    for column in target {
        let expr = exprs.get(columns.iter().position(|c| c.eq_ignore_ascii_case(column))?)?;
        if let Some(n) = expr.strip_prefix('$') {
            key.push(n.parse::<usize>().ok()?.checked_sub(1)?);
        } else if !expr.chars().all(|c| c.is_ascii_digit() || c == '-') {
            return None;
        }
    }
    Some(key)
}

/// How the `DO UPDATE SET ..` of `tail` folds two rows, if it is one of the [`Fold`]s
/// and every value it uses is a parameter of the row.
fn fold(head: &str, row: &str, tail: &str) -> Option<Fold> {
    let columns = list(&head[head.find('(')? + 1..head.rfind(')')?]);
    let exprs = list(row);
    let param = |column: &str| -> Option<usize> {
        let expr = exprs.get(columns.iter().position(|c| c.eq_ignore_ascii_case(column))?)?;
        expr.strip_prefix('$')?.parse::<usize>().ok()?.checked_sub(1)
    };
    // `table.column` of the row found, not of `excluded`.
    let current = |term: &str, column: &str| {
        term.split_once('.').is_some_and(|(table, c)| {
            c == column && table != "excluded" && !table.is_empty() && table.chars().all(|t| t.is_ascii_alphanumeric() || t == '_')
        })
    };
    let set = &tail[find_word(tail, "SET")? + "SET".len()..];
    let (assignments, condition) = match find_word(set, "WHERE") {
        Some(at) => (&set[..at], Some(&set[at + "WHERE".len()..])),
        None => (set, None),
    };
    let mut added = Vec::new();
    let mut replaced = Vec::new();
    for assignment in list(assignments) {
        let (column, value) = assignment.split_once('=')?;
        let (column, value) = (column.trim(), value.trim());
        let excluded = format!("excluded.{column}");
        if value == excluded {
            replaced.push(param(column)?);
        } else {
            let (left, right) = value.split_once('+')?;
            let (left, right) = (left.trim(), right.trim());
            if !((current(left, column) && right == excluded) || (left == excluded && current(right, column))) {
                return None;
            }
            added.push(param(column)?);
        }
    }
    match condition {
        None if replaced.is_empty() => Some(Fold::Add(added)),
        Some(condition) if added.is_empty() => {
            let (left, right) = condition.split_once('>')?;
            let column = left.trim().strip_prefix("excluded.")?;
            let k = param(column)?;
            (current(right.trim(), column) && replaced.contains(&k)).then_some(Fold::Max { k, set: replaced })
        }
        _ => None,
    }
}

fn list(text: &str) -> Vec<&str> {
    text.split(',').map(str::trim).collect()
}

/// The length up to the parenthesis closing the one `text` starts with.
fn matching_paren(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (at, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(at);
                }
            }
            _ => {}
        }
    }
    None
}

fn words(sql: &str) -> impl Iterator<Item = (usize, &str)> {
    sql.split_inclusive(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .scan(0, |at, piece| {
            let start = *at;
            *at += piece.len();
            let word = piece.trim_end_matches(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
            Some((start, word))
        })
        .filter(|(_, w)| !w.is_empty())
}

fn find_word(sql: &str, word: &str) -> Option<usize> {
    words(sql).find(|(_, w)| w.eq_ignore_ascii_case(word)).map(|(at, _)| at)
}

fn has_word(sql: &str, word: &str) -> bool {
    find_word(sql, word).is_some()
}

fn starts_with_words(sql: &str, expected: &[&str]) -> bool {
    let mut found = words(sql);
    expected.iter().all(|e| found.next().is_some_and(|(_, w)| w.eq_ignore_ascii_case(e)))
}

/// A statement ready to run: its text and parameters.
pub type Runnable = (Arc<str>, Vec<SqlValue>);

/// Rows of one shape waiting to be sent together.
struct Group {
    shape: Arc<Shape>,
    /// Each row's parameters, kept as they came: a statement per row takes its own.
    rows: Vec<Vec<SqlValue>>,
    /// The row (0-based) of each conflict key.
    keys: HashMap<Vec<SqlValue>, usize>,
}

impl Group {
    fn new(shape: Arc<Shape>, params: Vec<SqlValue>) -> Self {
        let insert = shape.rows.as_ref().expect("only row inserts are grouped");
        let keys = insert.key(&params).map(|key| (key, 0)).into_iter().collect();
        Self { shape, rows: vec![params], keys }
    }

    /// Takes the row into the group, or folds it into the row of its conflict key; gives
    /// it back when the group must be sent first.
    fn take(&mut self, insert: &RowInsert, params: Vec<SqlValue>) -> Result<(), Vec<SqlValue>> {
        if let Some(key) = insert.key(&params) {
            if let Some(&row) = self.keys.get(&key) {
                return if insert.fold_into(&mut self.rows[row], &params) { Ok(()) } else { Err(params) };
            }
            self.keys.insert(key, self.rows.len());
        }
        self.rows.push(params);
        Ok(())
    }

    fn send(self, multi_row: bool, out: &mut Vec<Runnable>) {
        let insert = self.shape.rows.as_ref().expect("only row inserts are grouped");
        if !multi_row {
            let sql = insert.sql(1);
            out.extend(self.rows.into_iter().map(|row| (sql.clone(), row)));
            return;
        }
        let mut left = self.rows.len();
        let mut rows = self.rows.into_iter();
        for size in SIZES {
            while left >= size {
                let mut params = Vec::with_capacity(size * insert.params);
                rows.by_ref().take(size).for_each(|row| params.extend(row));
                out.push((insert.sql(size), params));
                left -= size;
            }
        }
    }
}

/// The statements, in shapes from `shape`, as fewer set-based statements (see the
/// module's documentation); `multi_row: false` keeps one row per statement.
pub fn coalesce(statements: Vec<Statement>, shape: impl Fn(&Statement) -> Arc<Shape>, multi_row: bool) -> Vec<Runnable> {
    let mut out = Vec::with_capacity(if multi_row { statements.len() / 2 + 1 } else { statements.len() });
    let mut open: Vec<Group> = Vec::new();
    for statement in statements {
        let shape = shape(&statement);
        let insert = shape.rows.as_ref().filter(|insert| statement.params.len() == insert.params);
        let mut params = statement.params;
        if let Some(insert) = insert
            && let Some(at) = open.iter().position(|g| Arc::ptr_eq(&g.shape, &shape))
        {
            match open[at].take(insert, params) {
                Ok(()) => continue,
                Err(back) => params = back,
            }
            // A second row for one conflict key it cannot fold into: the group goes first.
            open.swap_remove(at).send(multi_row, &mut out);
        }
        let mut at = 0;
        while at < open.len() {
            if open[at].shape.shares_a_table(&shape) { open.swap_remove(at).send(multi_row, &mut out) } else { at += 1 }
        }
        match insert {
            Some(_) => open.push(Group::new(shape, params)),
            None => out.push((shape.sql.clone(), params)),
        }
    }
    for group in open {
        group.send(multi_row, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tables;

    const SCHEMA: &[&str] = &[
        "CREATE TABLE IF NOT EXISTS likes (video_id TEXT, user_id TEXT, PRIMARY KEY (video_id, user_id))",
        "CREATE TABLE IF NOT EXISTS counts (video_id TEXT PRIMARY KEY, likes BIGINT NOT NULL DEFAULT 0)",
        "CREATE TABLE IF NOT EXISTS videos (id TEXT PRIMARY KEY, deleted BIGINT NOT NULL DEFAULT 0)",
    ];
    const LIKE: &str = "INSERT INTO likes (video_id, user_id) VALUES ($1, $2)";
    const UNLIKE: &str = "DELETE FROM likes WHERE video_id = $1 AND user_id = $2";
    const COUNT: &str = "INSERT INTO counts (video_id, likes) VALUES ($1, $2)
         ON CONFLICT (video_id) DO UPDATE SET likes = counts.likes + excluded.likes";
    const DELETE_VIDEO: &str = "UPDATE videos SET deleted = 1 WHERE id = $1";
    const COUNT_IF_LIVE: &str = "INSERT INTO counts (video_id, likes) SELECT id, 1 FROM videos WHERE id = $1 AND deleted = 0
         ON CONFLICT (video_id) DO UPDATE SET likes = counts.likes + excluded.likes";

    fn like(video: &str, user: &str, on: bool) -> [Statement; 2] {
        [
            Statement::new(if on { LIKE } else { UNLIKE }, [video.into(), user.into()]),
            Statement::new(COUNT, [video.into(), SqlValue::Int(if on { 1 } else { -1 })]),
        ]
    }

    fn run(statements: Vec<Statement>) -> Vec<(String, Vec<SqlValue>)> {
        Tables::new(SCHEMA, 2)
            .coalesce(statements, true)
            .into_iter()
            .map(|(sql, params)| (sql.split_whitespace().collect::<Vec<_>>().join(" "), params))
            .collect()
    }

    #[test]
    fn rows_of_one_shape_go_in_one_statement_in_their_order() {
        let statements = [like("v1", "a", true), like("v2", "b", true), like("v3", "a", true), like("v4", "c", true)].concat();
        let run = run(statements);
        assert_eq!(run.len(), 2, "{run:?}");
        let likes = run.iter().find(|(sql, _)| sql.starts_with("INSERT INTO likes__g2")).unwrap();
        assert_eq!(likes.0, "INSERT INTO likes__g2 (video_id, user_id) VALUES ($1, $2), ($3, $4), ($5, $6), ($7, $8)");
        let users: Vec<&SqlValue> = likes.1.iter().skip(1).step_by(2).collect();
        assert_eq!(users, [&"a".into(), &"b".into(), &"a".into(), &"c".into()]);
        let counts = run.iter().find(|(sql, _)| sql.starts_with("INSERT INTO counts__g2")).unwrap();
        assert_eq!(
            counts.0,
            "INSERT INTO counts__g2 (video_id, likes) VALUES ($1, $2), ($3, $4), ($5, $6), ($7, $8) ON CONFLICT (video_id) DO UPDATE SET likes = counts__g2.likes + excluded.likes"
        );
        assert_eq!(counts.1[4..6], ["v3".into(), SqlValue::Int(1)]);
    }

    #[test]
    fn groups_are_sent_in_as_few_statements_of_the_fixed_sizes() {
        let statements: Vec<Statement> = (0..300).map(|i| Statement::new(LIKE, [format!("v{i}").into(), "a".into()])).collect();
        let rows: Vec<usize> = run(statements).iter().map(|(_, params)| params.len() / 2).collect();
        assert_eq!(rows, [256, 32, 8, 4]);
    }

    #[test]
    fn a_statement_on_a_grouped_table_sends_that_group_first() {
        let statements = [like("v1", "a", true), like("v1", "a", false), like("v1", "a", true)].concat();
        let run = run(statements);
        let order: Vec<String> = run.iter().map(|(sql, _)| sql.split(' ').take(3).collect::<Vec<_>>().join(" ")).collect();
        // The like goes before the unlike, the second like after it. The counts (another
        // table) wait, each in its own statement: they share their conflict key.
        let likes: Vec<&String> = order.iter().filter(|s| s.contains("likes")).collect();
        assert_eq!(likes, ["INSERT INTO likes__g2", "DELETE FROM likes__g2", "INSERT INTO likes__g2"]);
        // The counts (another table) wait, added up: +1 -1 +1.
        let counts: Vec<&Vec<SqlValue>> = run.iter().filter(|(sql, _)| sql.contains("INTO counts")).map(|(_, p)| p).collect();
        assert_eq!(counts, [&vec!["v1".into(), SqlValue::Int(1)]]);
    }

    #[test]
    fn rows_of_a_statement_that_only_adds_are_added_up_by_key() {
        let statements = [like("v1", "a", true), like("v2", "a", true), like("v1", "b", true), like("v1", "c", false)].concat();
        let counts: Vec<Vec<SqlValue>> = run(statements).into_iter().filter(|(sql, _)| sql.contains("INTO counts")).map(|(_, p)| p).collect();
        assert_eq!(counts, [vec!["v1".into(), SqlValue::Int(1), "v2".into(), SqlValue::Int(1)]]);
        // A sum that does not fit in an i64 is left to the database, which saturates or fails as it would.
        let statements = vec![Statement::new(COUNT, ["v1".into(), SqlValue::Int(i64::MAX)]), Statement::new(COUNT, ["v1".into(), SqlValue::Int(1)])];
        assert_eq!(run(statements).len(), 2);
    }

    #[test]
    fn a_repeated_conflict_key_of_a_statement_that_sets_starts_a_new_statement() {
        const SET_COUNT: &str = "INSERT INTO counts (video_id, likes) VALUES ($1, $2) ON CONFLICT (video_id) DO UPDATE SET likes = excluded.likes";
        let statements: Vec<Statement> =
            [("v1", 1), ("v2", 5), ("v1", 2)].iter().map(|(v, n)| Statement::new(SET_COUNT, [(*v).into(), SqlValue::Int(*n)])).collect();
        let rows: Vec<usize> = run(statements).iter().map(|(_, p)| p.len() / 2).collect();
        assert_eq!(rows, [2, 1]);
    }

    #[test]
    fn rows_of_a_statement_that_only_moves_forward_keep_the_greatest() {
        const LAST: &str = "INSERT INTO counts (video_id, likes) VALUES ($1, $2)
             ON CONFLICT (video_id) DO UPDATE SET likes = excluded.likes WHERE excluded.likes > counts.likes";
        let statements: Vec<Statement> =
            [("v1", 3), ("v2", 1), ("v1", 7), ("v1", 5)].iter().map(|(v, n)| Statement::new(LAST, [(*v).into(), SqlValue::Int(*n)])).collect();
        let rows: Vec<Vec<SqlValue>> = run(statements).into_iter().map(|(_, p)| p).collect();
        assert_eq!(rows, [vec!["v1".into(), SqlValue::Int(7), "v2".into(), SqlValue::Int(1)]]);
    }

    #[test]
    fn only_statements_that_add_or_move_forward_with_integers_of_the_row_fold() {
        let fold = |sql: &str| Shape::new(sql.to_owned(), vec![]).rows.and_then(|r| r.fold);
        assert_eq!(fold(COUNT), Some(Fold::Add(vec![1])));
        assert_eq!(
            fold("INSERT INTO c (id, a, b) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET a = c.a + excluded.a, b = excluded.b + c.b"),
            Some(Fold::Add(vec![1, 2]))
        );
        assert_eq!(
            fold("INSERT INTO c (id, k, x) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET k = excluded.k, x = excluded.x WHERE excluded.k > c.k"),
            Some(Fold::Max { k: 1, set: vec![1, 2] })
        );
        let none = [
            "INSERT INTO c (id, a) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET a = excluded.a",
            "INSERT INTO c (id, a) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET a = c.a + excluded.a WHERE c.a > 0",
            "INSERT INTO c (id, a) VALUES ($1, 1) ON CONFLICT (id) DO UPDATE SET a = c.a + excluded.a",
            "INSERT INTO c (id, a, b) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET a = c.a + excluded.b",
            "INSERT INTO c (id, k, x) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET x = excluded.x WHERE excluded.k > c.k",
            "INSERT INTO c (id, k) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET k = excluded.k WHERE excluded.k > c.k AND c.k > 0",
            "INSERT INTO c (id, k) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET k = excluded.k WHERE excluded.k < c.k",
            "INSERT INTO c (id, k) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET k = excluded.k WHERE excluded.k >= c.k",
            "INSERT INTO c (id, a) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
        ];
        for sql in none {
            assert_eq!(fold(sql), None, "{sql}");
        }
    }

    #[test]
    fn statements_reading_a_table_wait_for_its_rows_and_are_not_merged() {
        let statements = vec![
            Statement::new(COUNT, ["v1".into(), SqlValue::Int(1)]),
            Statement::new(DELETE_VIDEO, ["v2".into()]),
            Statement::new(COUNT_IF_LIVE, ["v2".into()]),
            Statement::new(COUNT_IF_LIVE, ["v3".into()]),
            Statement::new(COUNT, ["v4".into(), SqlValue::Int(1)]),
        ];
        let order: Vec<String> =
            run(statements).into_iter().map(|(sql, p)| format!("{} {p:?}", sql.split(' ').take(3).collect::<Vec<_>>().join(" "))).collect();
        assert_eq!(
            order,
            [
                "UPDATE videos__g2 SET [Text(\"v2\")]",
                "INSERT INTO counts__g2 [Text(\"v1\"), Int(1)]",
                "INSERT INTO counts__g2 [Text(\"v2\")]",
                "INSERT INTO counts__g2 [Text(\"v3\")]",
                "INSERT INTO counts__g2 [Text(\"v4\"), Int(1)]",
            ]
        );
    }

    #[test]
    fn only_plain_single_row_inserts_are_merged() {
        let shape = |sql: &str| Shape::new(sql.to_owned(), vec![]).rows.is_some();
        assert!(shape(LIKE));
        assert!(shape(COUNT));
        assert!(shape("INSERT INTO t (a, b) VALUES ($1, 1) ON CONFLICT (a) DO NOTHING"));
        assert!(!shape(COUNT_IF_LIVE));
        assert!(!shape("INSERT INTO t (a) VALUES ($1) RETURNING a"));
        assert!(!shape("INSERT INTO t (a) VALUES ('$1')"));
        assert!(!shape("INSERT INTO t (a, b) VALUES ($1, $2) ON CONFLICT (a) DO UPDATE SET b = $2"));
        assert!(!shape("INSERT INTO t (a, b) VALUES ($1, (SELECT 1))"));
        assert!(!shape("INSERT INTO t (a, b) VALUES ($1, $2) ON CONFLICT ON CONSTRAINT k DO UPDATE SET b = 1"));
        assert!(!shape("UPDATE t SET a = 1"));
    }
}
