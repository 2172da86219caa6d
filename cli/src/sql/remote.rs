//! `moldau sql --server URL`: statements go to a `moldau server`; queries to `POST /query`
//! (rows printed as they arrive, Ctrl-C closing the connection, which ends a push query), the
//! rest to `POST /statements`. `SET` and `UNSET` stay in the shell and go with each request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use moldau_sql::client::{Client, Line};
use moldau_sql::{parse, Statement};
use serde_json::Value;

use super::render::{caret, cell, RowPrinter};
use crate::output::Table;

/// The server and the shell's properties.
pub(crate) struct Remote {
    client: Client,
    properties: BTreeMap<String, String>,
}

impl Remote {
    pub(crate) fn new(client: Client) -> Self {
        Remote { client, properties: BTreeMap::new() }
    }

    /// Runs `text`'s statements on the server in order, printing each answer; an error is
    /// returned as printable text.
    pub(crate) fn run(&mut self, text: &str, interrupted: &AtomicBool) -> Result<(), String> {
        let statements = parse(text).map_err(|e| super::render::describe_error(&e, text))?;
        for s in statements {
            let props = serde_json::to_value(&self.properties).expect("maps serialize");
            let shift = |v: &Value| {
                // The server places errors within the statement it was sent.
                let (Some(line), Some(column)) = (v["line"].as_u64(), v["column"].as_u64()) else {
                    return String::new();
                };
                let column = if line == 1 { column + s.at.column - 1 } else { column };
                caret(text, line + s.at.line - 1, column)
            };
            match &s.statement {
                Statement::Set { key, value } => {
                    self.properties.insert(key.clone(), value.clone());
                    println!("property '{key}' set to '{value}'");
                }
                Statement::Unset { key } => match self.properties.remove(key) {
                    Some(_) => println!("property '{key}' unset"),
                    None => println!("property '{key}' was not set"),
                },
                Statement::Query(_) => {
                    let mut q = self.client.query(&s.text, &props).map_err(|e| e.to_string())?;
                    let status = q.status();
                    let mut printer = None;
                    interrupted.store(false, Ordering::Relaxed);
                    loop {
                        if interrupted.load(Ordering::Relaxed) {
                            q.cancel();
                            let n = printer.map_or(0, |p: RowPrinter| p.rows);
                            println!("({n} row{}; cancelled)", if n == 1 { "" } else { "s" });
                            interrupted.store(false, Ordering::Relaxed);
                            break;
                        }
                        match q.next(Duration::from_millis(100)).map_err(|e| e.to_string())? {
                            Line::Value(v) if status != 200 || v.get("@type") == Some(&Value::from("error")) => {
                                return Err(format!("{}{}", v["message"].as_str().unwrap_or("error"), shift(&v)));
                            }
                            Line::Value(Value::Object(header)) => {
                                let names: Vec<String> = header
                                    .get("columns")
                                    .and_then(Value::as_array)
                                    .map(|c| c.iter().map(|c| c["name"].as_str().unwrap_or("").to_string()).collect())
                                    .unwrap_or_default();
                                printer = Some(RowPrinter::new(&names));
                            }
                            Line::Value(Value::Array(row)) => {
                                if let Some(p) = &mut printer {
                                    p.row(&row);
                                }
                            }
                            Line::Value(_) | Line::Pending => {}
                            Line::End => {
                                let n = printer.map_or(0, |p| p.rows);
                                println!("({n} row{})", if n == 1 { "" } else { "s" });
                                break;
                            }
                        }
                    }
                }
                _ => {
                    let (status, v) = self.client.statements(&s.text, &props).map_err(|e| e.to_string())?;
                    if status != 200 {
                        return Err(format!("{}{}", v["message"].as_str().unwrap_or("error"), shift(&v)));
                    }
                    for r in v.as_array().into_iter().flatten() {
                        print_result(r);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Prints one result of `POST /statements`.
fn print_result(r: &Value) {
    match r["@type"].as_str() {
        Some("message") => println!("{}", r["message"].as_str().unwrap_or("")),
        Some("text") => print!("{}", r["text"].as_str().unwrap_or("")),
        Some("rows") => {
            let names: Vec<String> = r["columns"].as_array().into_iter().flatten().map(cell).collect();
            let header: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut t = Table::new(&header);
            for row in r["rows"].as_array().into_iter().flatten() {
                t.row(row.as_array().into_iter().flatten().map(cell).collect());
            }
            print!("{}", t.render());
        }
        _ => println!("{r}"),
    }
}
