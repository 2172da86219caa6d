//! Parsing: the script split into statements at `;`, each statement's tokens read by a
//! cursor, and a query's ksqlDB clauses blanked out of its text.

use std::time::Duration;

use datafusion_sql::sqlparser::dialect::GenericDialect;
use datafusion_sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Word};

use super::*;
use crate::error::{Position, Result, SqlError};
use crate::types::SqlType;

/// The text, with byte offsets of each line start (positions are 1-based, in characters).
struct Source<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source { text, line_starts }
    }

    /// The byte offset of a (1-based) position; the end of the text past it.
    fn offset(&self, p: Position) -> usize {
        let Some(&start) = self.line_starts.get(p.line.saturating_sub(1) as usize) else { return self.text.len() };
        let line = &self.text[start..];
        let col = p.column.saturating_sub(1) as usize;
        line.char_indices().nth(col).map_or(self.text.len(), |(i, _)| start + i)
    }
}

fn pos(t: &TokenWithSpan) -> Position {
    Position { line: t.span.start.line, column: t.span.start.column }
}

fn end_pos(t: &TokenWithSpan) -> Position {
    Position { line: t.span.end.line, column: t.span.end.column }
}

/// Describes a token for an error message.
fn describe(t: Option<&TokenWithSpan>) -> String {
    match t.map(|t| &t.token) {
        None | Some(Token::EOF) => "the end of the statement".into(),
        Some(tok) => format!("'{tok}'"),
    }
}

/// `[(col, …)] VALUES (v, …)` after `INSERT INTO target`.
fn insert_values(c: &mut Cursor<'_, '_>, target: String) -> Result<Statement> {
    let mut columns = None;
    if c.eat(&Token::LParen) {
        let mut cols = vec![c.ident("a column name")?];
        while c.eat(&Token::Comma) {
            cols.push(c.ident("a column name")?);
        }
        c.expect(&Token::RParen, "')' after the columns")?;
        columns = Some(cols);
    }
    c.expect_kw("VALUES")?;
    c.expect(&Token::LParen, "'(' before the values")?;
    let mut values = Vec::new();
    loop {
        let negative = c.eat(&Token::Minus);
        let v = match c.peek().map(|t| &t.token) {
            Some(Token::Number(n, _)) => Literal::Number(if negative { format!("-{n}") } else { n.clone() }),
            Some(Token::SingleQuotedString(s)) if !negative => Literal::Text(s.clone()),
            Some(Token::Word(w)) if !negative && w.quote_style.is_none() => match w.value.to_ascii_uppercase().as_str()
            {
                "NULL" => Literal::Null,
                "TRUE" => Literal::Bool(true),
                "FALSE" => Literal::Bool(false),
                _ => return Err(c.error("expected a value (a number, a 'string', TRUE, FALSE or NULL)")),
            },
            _ => return Err(c.error("expected a value (a number, a 'string', TRUE, FALSE or NULL)")),
        };
        c.i += 1;
        values.push(v);
        if !c.eat(&Token::Comma) {
            break;
        }
    }
    c.expect(&Token::RParen, "')' after the values")?;
    c.expect_end()?;
    Ok(Statement::InsertValues { target, columns, values })
}

/// Parses a script into statements (separated by `;`).
pub fn parse(text: &str) -> Result<Vec<Located>> {
    let tokens = Tokenizer::new(&GenericDialect {}, text).tokenize_with_location().map_err(|e| {
        SqlError::parse(e.message.clone(), Position { line: e.location.line, column: e.location.column })
    })?;
    let src = Source::new(text);
    let significant: Vec<TokenWithSpan> =
        tokens.into_iter().filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF)).collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut depth = 0i32;
    for (i, t) in significant.iter().enumerate() {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::SemiColon if depth <= 0 => {
                if i > start {
                    out.push(parse_one(&src, &significant[start..i])?);
                }
                start = i + 1;
                depth = 0;
            }
            _ => {}
        }
    }
    if start < significant.len() {
        out.push(parse_one(&src, &significant[start..])?);
    }
    Ok(out)
}

/// A cursor over one statement's tokens.
struct Cursor<'s, 't> {
    src: &'s Source<'s>,
    toks: &'t [TokenWithSpan],
    i: usize,
}

impl<'s, 't> Cursor<'s, 't> {
    fn peek(&self) -> Option<&'t TokenWithSpan> {
        self.toks.get(self.i)
    }

    fn error(&self, message: impl Into<String>) -> SqlError {
        let at = match self.peek() {
            Some(t) => pos(t),
            None => self.toks.last().map(end_pos).unwrap_or(Position { line: 1, column: 1 }),
        };
        SqlError::parse(format!("{}, found {}", message.into(), describe(self.peek())), at)
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek().map(|t| &t.token), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<()> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.error(format!("expected {kw}")))
        }
    }

    fn eat(&mut self, tok: &Token) -> bool {
        if self.peek().is_some_and(|t| &t.token == tok) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, tok: &Token, what: &str) -> Result<()> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(self.error(format!("expected {what}")))
        }
    }

    /// An identifier: unquoted lower-cased, quoted kept.
    fn ident(&mut self, what: &str) -> Result<String> {
        match self.peek().map(|t| &t.token) {
            Some(Token::Word(Word { value, quote_style, .. })) => {
                self.i += 1;
                Ok(if quote_style.is_some() { value.clone() } else { value.to_ascii_lowercase() })
            }
            _ => Err(self.error(format!("expected {what}"))),
        }
    }

    /// A single-quoted string.
    fn quoted(&mut self, what: &str) -> Result<String> {
        match self.peek().map(|t| &t.token) {
            Some(Token::SingleQuotedString(v)) => {
                self.i += 1;
                Ok(v.clone())
            }
            _ => Err(self.error(format!("expected {what}"))),
        }
    }

    fn number(&mut self, what: &str) -> Result<u64> {
        match self.peek().map(|t| &t.token) {
            Some(Token::Number(n, _)) => match n.parse() {
                Ok(v) => {
                    self.i += 1;
                    Ok(v)
                }
                Err(_) => Err(self.error(format!("expected {what} (a whole number)"))),
            },
            _ => Err(self.error(format!("expected {what}"))),
        }
    }

    fn done(&self) -> bool {
        self.i >= self.toks.len()
    }

    fn expect_end(&self) -> Result<()> {
        if self.done() {
            Ok(())
        } else {
            Err(self.error("expected the end of the statement"))
        }
    }

    /// The text from the current token to the end.
    fn rest_text(&self) -> &'s str {
        match (self.peek(), self.toks.last()) {
            (Some(first), Some(last)) => &self.src.text[self.src.offset(pos(first))..self.src.offset(end_pos(last))],
            _ => "",
        }
    }
}

fn parse_one(src: &Source<'_>, toks: &[TokenWithSpan]) -> Result<Located> {
    let at = pos(&toks[0]);
    let mut c = Cursor { src, toks, i: 0 };
    let statement = if c.eat_kw("CREATE") {
        create(&mut c)?
    } else if c.eat_kw("INSERT") {
        c.expect_kw("INTO")?;
        let target = c.ident("the target stream")?;
        if c.is_kw("VALUES") || c.peek().is_some_and(|t| t.token == Token::LParen) {
            insert_values(&mut c, target)?
        } else if !c.is_kw("SELECT") {
            return Err(c.error("expected SELECT or VALUES (INSERT INTO s SELECT …, INSERT INTO s (…) VALUES (…))"));
        } else {
            Statement::InsertInto { target, query: query(&mut c)? }
        }
    } else if c.is_kw("SELECT") {
        Statement::Query(query(&mut c)?)
    } else if c.eat_kw("SHOW") || c.eat_kw("LIST") {
        let what = if c.eat_kw("STREAMS") {
            Show::Streams
        } else if c.eat_kw("TABLES") {
            Show::Tables
        } else if c.eat_kw("QUERIES") {
            Show::Queries
        } else if c.eat_kw("TOPICS") {
            Show::Topics
        } else {
            return Err(c.error("expected STREAMS, TABLES, QUERIES or TOPICS"));
        };
        c.expect_end()?;
        Statement::Show(what)
    } else if c.eat_kw("SET") {
        let key = c.quoted("the property name, quoted ('auto.offset.reset')")?;
        c.expect(&Token::Eq, "=")?;
        let value = c.quoted("the property value, quoted")?;
        c.expect_end()?;
        Statement::Set { key, value }
    } else if c.eat_kw("UNSET") {
        let key = c.quoted("the property name, quoted")?;
        c.expect_end()?;
        Statement::Unset { key }
    } else if c.eat_kw("DESCRIBE") {
        let mut extended = c.eat_kw("EXTENDED");
        let name = c.ident("a stream or table name")?;
        extended |= c.eat_kw("EXTENDED");
        c.expect_end()?;
        Statement::Describe { name, extended }
    } else if c.eat_kw("EXPLAIN") {
        if !c.is_kw("SELECT") {
            return Err(c.error("expected SELECT after EXPLAIN"));
        }
        Statement::Explain(query(&mut c)?)
    } else if c.eat_kw("DROP") {
        let kind = source_kind(&mut c)?;
        let if_exists = if c.eat_kw("IF") {
            c.expect_kw("EXISTS")?;
            true
        } else {
            false
        };
        let name = c.ident("a name")?;
        let delete_topic = if c.eat_kw("DELETE") {
            c.expect_kw("TOPIC")?;
            true
        } else {
            false
        };
        c.expect_end()?;
        Statement::Drop { kind, name, if_exists, delete_topic }
    } else if c.eat_kw("TERMINATE") {
        let id = c.ident("a query id")?;
        c.expect_end()?;
        Statement::Terminate { id }
    } else {
        return Err(c.error(
            "expected CREATE, INSERT, SELECT, SHOW, LIST, DESCRIBE, EXPLAIN, DROP or TERMINATE at the start of a statement",
        ));
    };
    let last = toks.last().expect("a statement has tokens");
    let end = src.offset(Position { line: last.span.end.line, column: last.span.end.column });
    let text = src.text.get(src.offset(at)..end).unwrap_or_default().trim().to_string();
    Ok(Located { statement, at, text })
}

fn source_kind(c: &mut Cursor<'_, '_>) -> Result<SourceKind> {
    if c.eat_kw("STREAM") {
        Ok(SourceKind::Stream)
    } else if c.eat_kw("TABLE") {
        Ok(SourceKind::Table)
    } else {
        Err(c.error("expected STREAM or TABLE"))
    }
}

fn create(c: &mut Cursor<'_, '_>) -> Result<Statement> {
    let or_replace = if c.eat_kw("OR") {
        c.expect_kw("REPLACE")?;
        true
    } else {
        false
    };
    let kind = source_kind(c)?;
    let if_not_exists = if c.eat_kw("IF") {
        c.expect_kw("NOT")?;
        c.expect_kw("EXISTS")?;
        true
    } else {
        false
    };
    let name = c.ident("a name")?;
    let mut columns = Vec::new();
    if c.eat(&Token::LParen) {
        loop {
            columns.push(column(c, kind)?);
            if c.eat(&Token::Comma) {
                continue;
            }
            c.expect(&Token::RParen, "',' or ')' in the column list")?;
            break;
        }
    }
    let props = if c.eat_kw("WITH") { props(c)? } else { Props::new() };
    if c.eat_kw("AS") {
        if !columns.is_empty() {
            return Err(SqlError::Semantic(format!(
                "{name}: a CREATE … AS SELECT takes its columns from the query; leave out the column list"
            )));
        }
        if !c.is_kw("SELECT") {
            return Err(c.error("expected SELECT after AS"));
        }
        let query = query(c)?;
        return Ok(Statement::CreateAs(CreateAs { kind, name, props, query, if_not_exists, or_replace }));
    }
    c.expect_end()?;
    if columns.is_empty() {
        return Err(SqlError::Semantic(format!("{name}: give its columns, e.g. (id STRING KEY, amount DOUBLE)")));
    }
    Ok(Statement::CreateSource(CreateSource { kind, name, columns, props, if_not_exists, or_replace }))
}

fn column(c: &mut Cursor<'_, '_>, kind: SourceKind) -> Result<Column> {
    let name = c.ident("a column name")?;
    let type_at = c.peek().map(pos);
    let type_name = match c.peek().map(|t| &t.token) {
        Some(Token::Word(w)) => {
            c.i += 1;
            w.value.clone()
        }
        _ => return Err(c.error(format!("expected the type of column {name}"))),
    };
    let mut args = Vec::new();
    if c.eat(&Token::LParen) {
        loop {
            args.push(c.number("a type argument")?);
            if c.eat(&Token::Comma) {
                continue;
            }
            c.expect(&Token::RParen, "')' after the type arguments")?;
            break;
        }
    }
    let ty = SqlType::parse(&type_name, &args).map_err(|m| match m.strip_suffix(" columns") {
        Some(construct) => SqlError::Unsupported(format!("{construct} columns (column {name})")),
        None => SqlError::parse(format!("column {name}: {m}"), type_at.unwrap_or(Position { line: 1, column: 1 })),
    })?;
    let key = if c.eat_kw("PRIMARY") {
        c.expect_kw("KEY")?;
        if kind == SourceKind::Stream {
            return Err(SqlError::Semantic(format!(
                "column {name}: a stream has KEY columns, not PRIMARY KEY (tables have PRIMARY KEY)"
            )));
        }
        true
    } else if c.eat_kw("KEY") {
        if kind == SourceKind::Table {
            return Err(SqlError::Semantic(format!("column {name}: a table's key column is declared PRIMARY KEY")));
        }
        true
    } else {
        false
    };
    Ok(Column { name, ty, key })
}

fn props(c: &mut Cursor<'_, '_>) -> Result<Props> {
    c.expect(&Token::LParen, "'(' after WITH")?;
    let mut out = Props::new();
    loop {
        let key = c.ident("a property name")?;
        c.expect(&Token::Eq, "'=' after the property name")?;
        let value = match c.peek().map(|t| &t.token) {
            Some(Token::SingleQuotedString(s)) => PropValue::Text(s.clone()),
            Some(Token::Number(n, _)) => {
                PropValue::Number(n.parse().map_err(|_| c.error(format!("expected a whole number for {key}")))?)
            }
            _ => return Err(c.error(format!("expected a quoted string or a number for {key}"))),
        };
        c.i += 1;
        if out.insert(key.clone(), value).is_some() {
            return Err(SqlError::Semantic(format!("property {key} is given twice")));
        }
        if c.eat(&Token::Comma) {
            continue;
        }
        c.expect(&Token::RParen, "',' or ')' in WITH (…)")?;
        return Ok(out);
    }
}

/// A duration: `<n> <unit>` with MILLISECOND(S), SECOND(S), MINUTE(S), HOUR(S), DAY(S).
fn duration(c: &mut Cursor<'_, '_>) -> Result<Duration> {
    let n = c.number("a duration (e.g. 10 SECONDS)")?;
    let unit = match c.peek().map(|t| &t.token) {
        Some(Token::Word(w)) => w.value.to_ascii_uppercase(),
        _ => return Err(c.error("expected a time unit (MILLISECONDS, SECONDS, MINUTES, HOURS, DAYS)")),
    };
    let ms = match unit.trim_end_matches('S') {
        "MILLISECOND" => 1,
        "SECOND" => 1_000,
        "MINUTE" => 60_000,
        "HOUR" => 3_600_000,
        "DAY" => 86_400_000,
        _ => return Err(c.error("expected a time unit (MILLISECONDS, SECONDS, MINUTES, HOURS, DAYS)")),
    };
    c.i += 1;
    Ok(Duration::from_millis(n.saturating_mul(ms)))
}

fn window(c: &mut Cursor<'_, '_>) -> Result<WindowSpec> {
    let kind_kw = if c.eat_kw("TUMBLING") {
        "TUMBLING"
    } else if c.eat_kw("HOPPING") {
        "HOPPING"
    } else if c.eat_kw("SESSION") {
        "SESSION"
    } else {
        return Err(c.error("expected TUMBLING, HOPPING or SESSION after WINDOW"));
    };
    c.expect(&Token::LParen, "'(' after the window type")?;
    let kind = match kind_kw {
        "TUMBLING" => {
            c.expect_kw("SIZE")?;
            WindowKind::Tumbling { size: duration(c)? }
        }
        "HOPPING" => {
            c.expect_kw("SIZE")?;
            let size = duration(c)?;
            c.expect(&Token::Comma, "',' then ADVANCE BY")?;
            c.expect_kw("ADVANCE")?;
            c.expect_kw("BY")?;
            let advance = duration(c)?;
            if advance.is_zero() || advance > size {
                return Err(SqlError::Semantic(format!(
                    "HOPPING window: ADVANCE BY ({advance:?}) must be more than 0 and at most the SIZE ({size:?})"
                )));
            }
            WindowKind::Hopping { size, advance }
        }
        _ => WindowKind::Session { gap: duration(c)? },
    };
    let grace = if c.eat(&Token::Comma) {
        c.expect_kw("GRACE")?;
        c.expect_kw("PERIOD")?;
        Some(duration(c)?)
    } else {
        None
    };
    c.expect(&Token::RParen, "')' to close the window")?;
    if let WindowKind::Tumbling { size } | WindowKind::Hopping { size, .. } = kind {
        if size.is_zero() {
            return Err(SqlError::Semantic("a window SIZE must be more than 0".into()));
        }
    }
    Ok(WindowSpec { kind, grace })
}

/// A SELECT to the end of the statement, its ksqlDB clauses blanked out of the SQL text.
fn query(c: &mut Cursor<'_, '_>) -> Result<Query> {
    let text = c.rest_text();
    let base = c.peek().map(|t| c.src.offset(pos(t))).unwrap_or(0);
    let mut blanks: Vec<(usize, usize)> = Vec::new();
    let (mut window_spec, mut emit, mut partition_by) = (None, None, None);
    let mut depth = 0i32;
    while let Some(t) = c.peek() {
        match &t.token {
            Token::LParen => {
                depth += 1;
                c.i += 1;
            }
            Token::RParen => {
                depth -= 1;
                c.i += 1;
            }
            Token::Word(w) if depth == 0 && w.quote_style.is_none() && w.value.eq_ignore_ascii_case("WINDOW") => {
                let start = c.src.offset(pos(t));
                c.i += 1;
                if window_spec.is_some() {
                    return Err(c.error("one WINDOW clause per query"));
                }
                window_spec = Some(window(c)?);
                blanks.push((start, clause_end(c)));
            }
            Token::Word(w) if depth == 0 && w.quote_style.is_none() && w.value.eq_ignore_ascii_case("EMIT") => {
                let start = c.src.offset(pos(t));
                c.i += 1;
                emit = Some(if c.eat_kw("CHANGES") {
                    Emit::Changes
                } else if c.eat_kw("FINAL") {
                    Emit::Final
                } else {
                    return Err(c.error("expected CHANGES or FINAL after EMIT"));
                });
                blanks.push((start, clause_end(c)));
            }
            Token::Word(w) if depth == 0 && w.quote_style.is_none() && w.value.eq_ignore_ascii_case("PARTITION") => {
                let start = c.src.offset(pos(t));
                c.i += 1;
                c.expect_kw("BY")?;
                let expr_start = c.peek().map(|t| c.src.offset(pos(t)));
                // The expression runs to EMIT, LIMIT or the end.
                let mut d = 0i32;
                while let Some(t) = c.peek() {
                    match &t.token {
                        Token::LParen => d += 1,
                        Token::RParen => d -= 1,
                        Token::Word(w)
                            if d == 0
                                && w.quote_style.is_none()
                                && (w.value.eq_ignore_ascii_case("EMIT") || w.value.eq_ignore_ascii_case("LIMIT")) =>
                        {
                            break
                        }
                        _ => {}
                    }
                    c.i += 1;
                }
                let end = clause_end(c);
                match expr_start {
                    Some(s) if s < end => partition_by = Some(c.src.text[s..end].trim().to_string()),
                    _ => return Err(c.error("expected an expression after PARTITION BY")),
                }
                blanks.push((start, end));
            }
            _ => c.i += 1,
        }
    }
    let mut sql: String = text.to_string();
    for (s, e) in blanks {
        let (s, e) = (s - base, (e - base).min(sql.len()));
        let blank: String = sql[s..e].chars().map(|ch| if ch == '\n' { '\n' } else { ' ' }).collect();
        sql.replace_range(s..e, &blank);
    }
    Ok(Query { sql, window: window_spec, emit, partition_by, text: text.to_string() })
}

/// The byte offset just past the last token consumed.
fn clause_end(c: &Cursor<'_, '_>) -> usize {
    c.toks.get(c.i.wrapping_sub(1)).map_or(0, |t| c.src.offset(end_pos(t)))
}
