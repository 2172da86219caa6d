//! Running statements and printing what they answer: messages, aligned tables, texts, and a
//! push query's rows as they arrive (until its LIMIT or Ctrl-C).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use moldau_sql::{Executor, Outcome, PushQuery, SqlError};

use crate::output::Table;

/// Where statements run: here, or on a server.
enum Backend {
    Local(Option<Box<Executor>>),
    Remote(super::remote::Remote),
}

/// An executor (or a server) and the Ctrl-C flag.
pub(crate) struct Session {
    backend: Backend,
    pub(super) interrupted: Arc<AtomicBool>,
}

impl Session {
    pub(crate) fn new(executor: Executor, interrupted: Arc<AtomicBool>) -> Self {
        Session { backend: Backend::Local(Some(Box::new(executor))), interrupted }
    }

    /// A session whose statements run on a `moldau server`.
    pub(crate) fn remote(client: moldau_sql::client::Client, interrupted: Arc<AtomicBool>) -> Self {
        Session { backend: Backend::Remote(super::remote::Remote::new(client)), interrupted }
    }

    /// Runs a script's statements in order; stops at the first error.
    pub(crate) fn run_script(&mut self, text: &str) -> Result<()> {
        self.run(text).map_err(|e| anyhow!(e))
    }

    /// Runs statements, printing each answer; an error is returned as printable text.
    pub(crate) fn run(&mut self, text: &str) -> std::result::Result<(), String> {
        let mut executor = match &mut self.backend {
            Backend::Remote(r) => return r.run(text, &self.interrupted),
            Backend::Local(e) => e.take().expect("open until closed"),
        };
        let mut failed = None;
        let result = executor.execute_each(text, |o| {
            if failed.is_none() {
                if let Err(e) = self.print(o) {
                    failed = Some(e);
                }
            }
        });
        self.backend = Backend::Local(Some(executor));
        result.map_err(|e| describe_error(&e, text))?;
        failed.map_or(Ok(()), Err)
    }

    fn print(&mut self, o: Outcome) -> std::result::Result<(), String> {
        match o {
            Outcome::Message(m) => println!("{m}"),
            Outcome::Text(t) => print!("{t}"),
            Outcome::Rows { columns, rows } => {
                let header: Vec<&str> = columns.iter().map(String::as_str).collect();
                let mut t = Table::new(&header);
                for r in rows {
                    t.row(r);
                }
                print!("{}", t.render());
            }
            Outcome::Push(q) => self.stream(q)?,
            Outcome::Pull(r) => {
                let header: Vec<&str> = r.columns.iter().map(|c| c.name.as_str()).collect();
                let mut t = Table::new(&header);
                for row in &r.rows {
                    t.row(row.iter().map(cell).collect());
                }
                print!("{}", t.render());
                println!("({} row{})", r.rows.len(), if r.rows.len() == 1 { "" } else { "s" });
            }
        }
        Ok(())
    }

    /// Prints a push query's rows as they come, until its limit or Ctrl-C.
    fn stream(&mut self, mut q: PushQuery) -> std::result::Result<(), String> {
        self.interrupted.store(false, Ordering::Relaxed);
        let names: Vec<String> = q.columns().iter().map(|c| c.name.clone()).collect();
        let mut printer = RowPrinter::new(&names);
        while !q.is_done() && !self.interrupted.load(Ordering::Relaxed) {
            match q.next_row(Duration::from_millis(100)) {
                Ok(Some(row)) => printer.row(&row),
                Ok(None) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        let why = if q.is_done() { "limit reached" } else { "cancelled" };
        let n = printer.rows;
        println!("({n} row{}; {why})", if n == 1 { "" } else { "s" });
        self.interrupted.store(false, Ordering::Relaxed);
        q.close().map_err(|e| e.to_string())
    }

    /// Stops every query of the session.
    pub(crate) fn close(&mut self) {
        if let Backend::Local(Some(mut e)) = std::mem::replace(&mut self.backend, Backend::Local(None)) {
            if let Err(err) = e.close() {
                eprintln!("error: {err}");
            }
        }
    }
}

/// A JSON value as a table cell (strings without quotes, null as `null`).
pub(super) fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An error as text: for a syntax error, the line it is on with a caret under the column.
pub(crate) fn describe_error(e: &SqlError, text: &str) -> String {
    let mut out = e.to_string();
    if let Some(at) = e.position() {
        out.push_str(&caret(text, at.line, at.column));
    }
    out
}

/// The line `line` of `text` with a caret under `column` (1-based), on lines of their own.
pub(super) fn caret(text: &str, line: u64, column: u64) -> String {
    match text.lines().nth(line.saturating_sub(1) as usize) {
        Some(l) => format!("\n  {l}\n  {}^", " ".repeat(column.saturating_sub(1) as usize)),
        None => String::new(),
    }
}

/// Prints rows as they come: the header, then each row (flushed), as a push query's are.
pub(super) struct RowPrinter {
    widths: Vec<usize>,
    pub(super) rows: usize,
}

impl RowPrinter {
    /// Prints the header of `names`.
    pub(super) fn new(names: &[String]) -> Self {
        let widths: Vec<usize> = names.iter().map(|n| n.len().max(12)).collect();
        let p = RowPrinter { widths, rows: 0 };
        println!("{}", p.line(names));
        println!("{}", p.widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("-+-"));
        p
    }

    fn line(&self, cells: &[String]) -> String {
        cells.iter().zip(&self.widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join(" | ")
    }

    /// Prints one row.
    pub(super) fn row(&mut self, row: &[serde_json::Value]) {
        self.rows += 1;
        let cells: Vec<String> = row.iter().map(cell).collect();
        println!("{}", self.line(&cells));
        let _ = std::io::stdout().flush();
    }
}
