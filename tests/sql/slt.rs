//! Golden tests in sqllogictest files (`tests/sql/slt/*.slt`, the format DataFusion keeps its
//! SQL tests in), each run against its own embedded broker-sim and executor:
//!
//! ```text
//! statement ok                      statement error <text the error contains>
//! <statement>                       <statement>
//!
//! query <column types> [rowsort]
//! <SELECT … (a pull query, or a push query ending in EMIT CHANGES LIMIT n)>
//! ----
//! <expected rows, values separated by spaces, NULL for null>
//! ```
//!
//! A pull query is asked again until it answers the expected rows (a table's store shows a
//! commit about a second after it), for at most 60 s; a push query's rows are read until its
//! LIMIT. Lines starting with `#` are comments.

use std::time::{Duration, Instant};

use moldau_sql::{Executor, Outcome, PushQuery};

use crate::persistent::start;

#[derive(Debug)]
enum Record {
    Ok(String),
    Error(String, String),
    Query { sql: String, rowsort: bool, expected: Vec<String> },
}

fn parse(text: &str) -> Vec<(usize, Record)> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        let at = i + 1;
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut body = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() && lines[i].trim() != "----" {
            body.push(lines[i]);
            i += 1;
        }
        let sql = body.join("\n");
        if line == "statement ok" {
            out.push((at, Record::Ok(sql)));
        } else if let Some(e) = line.strip_prefix("statement error ") {
            out.push((at, Record::Error(sql, e.trim().to_string())));
        } else if let Some(q) = line.strip_prefix("query ") {
            let mut expected = Vec::new();
            if i < lines.len() && lines[i].trim() == "----" {
                i += 1;
                while i < lines.len() && !lines[i].trim().is_empty() {
                    expected.push(lines[i].trim().to_string());
                    i += 1;
                }
            }
            let rowsort = q.split_whitespace().any(|w| w == "rowsort");
            if rowsort {
                expected.sort();
            }
            out.push((at, Record::Query { sql, rowsort, expected }));
        } else {
            panic!("line {at}: unknown record {line:?}");
        }
    }
    out
}

fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "NULL".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn row(values: &[serde_json::Value]) -> String {
    values.iter().map(cell).collect::<Vec<_>>().join(" ")
}

/// The rows of a push query until its LIMIT (at most 60 s).
fn push_rows(mut q: PushQuery) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut rows = Vec::new();
    while !q.is_done() && Instant::now() < deadline {
        if let Some(r) = q.next_row(Duration::from_millis(100)).unwrap() {
            rows.push(row(&r));
        }
    }
    q.close().unwrap();
    rows
}

fn run_query(x: &mut Executor, sql: &str, rowsort: bool, expected: &[String]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let pull = !sql.to_ascii_uppercase().contains("EMIT CHANGES");
    loop {
        let answer = match x.execute(sql) {
            Ok(a) => a,
            // The table's query is still starting: ask again.
            Err(e) if pull && e.to_string().contains("not ready") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) => return Err(e.to_string()),
        };
        let rows = match answer.into_iter().last() {
            Some(Outcome::Push(q)) => push_rows(q),
            Some(Outcome::Pull(r)) => r.rows.iter().map(|r| row(r)).collect(),
            Some(Outcome::Rows { rows, .. }) => rows.into_iter().map(|r| r.join(" ")).collect(),
            other => return Err(format!("not a query: {other:?}")),
        };
        let mut rows = rows;
        if rowsort {
            rows.sort();
        }
        if rows == expected || !pull || Instant::now() > deadline {
            return if rows == expected {
                Ok(())
            } else {
                Err(format!("expected:\n{}\ngot:\n{}", expected.join("\n"), rows.join("\n")))
            };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run_file(name: &str, text: &str) {
    let (cluster, _bootstrap, _dir, mut x) = start();
    for (at, record) in parse(text) {
        let result = match &record {
            Record::Ok(sql) => x.execute(sql).map(|_| ()).map_err(|e| e.to_string()),
            Record::Error(sql, want) => match x.execute(sql) {
                Ok(o) => Err(format!("succeeded: {o:?}")),
                Err(e) if e.to_string().contains(want.as_str()) => Ok(()),
                Err(e) => Err(format!("the error does not contain {want:?}: {e}")),
            },
            Record::Query { sql, rowsort, expected } => run_query(&mut x, sql, *rowsort, expected),
        };
        if let Err(e) = result {
            panic!("{name}:{at}: {e}\n{record:?}");
        }
    }
    drop(x);
    cluster.shutdown();
}

#[test]
fn should_pass_every_golden_file() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/slt");
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 4, "the golden files are there: {files:?}");
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        eprintln!("{name}");
        run_file(&name, &std::fs::read_to_string(&f).unwrap());
    }
}
