//! The HTTP endpoints: routing, request bodies, statements and queries (run on blocking
//! threads: the executor runs its own clients), and JSON answers and errors.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::body::{full, streamed, ResponseBody};
use crate::commands::CommandLog;
use crate::error::SqlError;
use crate::executor::{ExecutorConfig, Outcome};
use crate::statement::{parse, Emit, Statement};

/// The largest request body taken.
const MAX_BODY: usize = 1 << 20;

/// Rows a push query may have in flight to a slow client before it is held back.
const PUSH_BUFFER: usize = 256;

/// What every request sees.
pub(super) struct State {
    pub(super) log: CommandLog,
    pub(super) config: ExecutorConfig,
    pub(super) listen: SocketAddr,
}

type Answer = Response<ResponseBody>;

fn json_answer(status: StatusCode, v: &Value) -> Answer {
    let mut r = Response::new(full(serde_json::to_vec(v).expect("JSON values serialize")));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, message: impl Into<String>) -> Answer {
    json_answer(status, &json!({"@type": "error", "message": message.into()}))
}

/// An SQL error as JSON (with its position) and its status.
fn sql_error(e: &SqlError) -> (StatusCode, Value) {
    let status = match e {
        SqlError::Execution(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut v = json!({"@type": "error", "message": e.to_string()});
    if let Some(at) = e.position() {
        v["line"] = json!(at.line);
        v["column"] = json!(at.column);
    }
    (status, v)
}

/// Serves one request.
pub(super) async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Answer, Infallible> {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    Ok(match (&method, path.as_str()) {
        (&Method::POST, "/statements" | "/ksql") => match body(req).await {
            Ok((sql, properties)) => blocking(move || statements(&state, &sql, properties)).await,
            Err(e) => e,
        },
        (&Method::POST, "/query") => match body(req).await {
            Ok((sql, properties)) => blocking(move || query(&state, &sql, properties)).await,
            Err(e) => e,
        },
        (&Method::GET, "/info") => info(&state),
        (&Method::GET, "/healthcheck") => health(&state),
        (_, "/statements" | "/ksql" | "/query" | "/info" | "/healthcheck") => {
            error(StatusCode::METHOD_NOT_ALLOWED, format!("{method} {path} is not served; see the endpoints"))
        }
        _ => error(
            StatusCode::NOT_FOUND,
            format!(
                "no endpoint {method} {path}; the endpoints are POST /statements, POST /query, GET /info and GET \
                 /healthcheck"
            ),
        ),
    })
}

/// Runs `f` on a blocking thread.
async fn blocking(f: impl FnOnce() -> Answer + Send + 'static) -> Answer {
    match tokio::task::spawn_blocking(f).await {
        Ok(a) => a,
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("the request's work failed: {e}")),
    }
}

/// The statement text (`sql`, or ksqlDB's `ksql`) and the session properties (`properties`,
/// or ksqlDB's `streamsProperties`) of a request body.
async fn body(req: Request<Incoming>) -> Result<(String, BTreeMap<String, String>), Answer> {
    let bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {MAX_BODY} bytes")))
        }
        Err(e) => return Err(error(StatusCode::BAD_REQUEST, format!("reading the body: {e}"))),
    };
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")))?;
    let sql = match v.get("sql").or_else(|| v.get("ksql")) {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(error(StatusCode::BAD_REQUEST, "\"sql\" must be a string of statements")),
        None => return Err(error(StatusCode::BAD_REQUEST, "the body needs \"sql\": the statements to run")),
    };
    let mut properties = BTreeMap::new();
    match v.get("properties").or_else(|| v.get("streamsProperties")) {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                properties.insert(k.clone(), v);
            }
        }
        Some(_) => return Err(error(StatusCode::BAD_REQUEST, "\"properties\" must be an object")),
    }
    Ok((sql, properties))
}

/// An answer as JSON.
fn outcome(o: Outcome, text: &str) -> Value {
    match o {
        Outcome::Message(m) => json!({"@type": "message", "statementText": text, "message": m}),
        Outcome::Text(t) => json!({"@type": "text", "statementText": text, "text": t}),
        Outcome::Rows { columns, rows } => {
            json!({"@type": "rows", "statementText": text, "columns": columns, "rows": rows})
        }
        Outcome::Pull(r) => {
            let columns: Vec<&str> = r.columns.iter().map(|c| c.name.as_str()).collect();
            json!({"@type": "rows", "statementText": text, "columns": columns, "rows": r.rows})
        }
        Outcome::Push(q) => {
            let _ = q.close();
            json!({"@type": "error", "statementText": text, "message": "push queries are served by POST /query"})
        }
    }
}

fn statements(state: &State, sql: &str, mut properties: BTreeMap<String, String>) -> Answer {
    let parsed = match parse(sql) {
        Ok(p) => p,
        Err(e) => {
            let (status, v) = sql_error(&e);
            return json_answer(status, &v);
        }
    };
    if let Some(p) =
        parsed.iter().find(|p| matches!(&p.statement, Statement::Query(q) if q.emit == Some(Emit::Changes)))
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("push queries stream their rows: POST them to /query ({})", p.text),
        );
    }
    let texts: Vec<String> = parsed.into_iter().map(|p| p.text).collect();
    let mut results = Vec::new();
    let run = state.log.execute(sql, &mut properties, |o| {
        let text = texts.get(results.len()).map_or("", String::as_str);
        results.push(outcome(o, text));
    });
    match run {
        Ok(()) => json_answer(StatusCode::OK, &Value::Array(results)),
        Err(e) => {
            let (status, mut v) = sql_error(&e);
            v["statementIndex"] = json!(results.len());
            v["statementText"] = json!(texts.get(results.len()));
            v["results"] = Value::Array(results);
            json_answer(status, &v)
        }
    }
}

fn ndjson(lines: Vec<Value>) -> Answer {
    let mut out = Vec::new();
    for l in lines {
        serde_json::to_writer(&mut out, &l).expect("JSON values serialize");
        out.push(b'\n');
    }
    let mut r = Response::new(full(out));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    r
}

fn columns_line(columns: &[crate::statement::Column]) -> Value {
    json!({"columns": columns.iter().map(|c| json!({"name": c.name, "type": c.ty.to_string()})).collect::<Vec<_>>()})
}

fn query(state: &State, sql: &str, mut properties: BTreeMap<String, String>) -> Answer {
    match parse(sql) {
        Ok(p) if p.len() == 1 && matches!(p[0].statement, Statement::Query(_)) => {}
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "POST /query takes one SELECT (a pull query, or a push query ending in EMIT CHANGES); other \
                 statements go to /statements",
            )
        }
        Err(e) => {
            let (status, v) = sql_error(&e);
            return json_answer(status, &v);
        }
    }
    let mut answer = None;
    if let Err(e) = state.log.execute(sql, &mut properties, |o| answer = Some(o)) {
        let (status, v) = sql_error(&e);
        return json_answer(status, &v);
    }
    match answer {
        Some(Outcome::Pull(r)) => {
            let mut lines = vec![columns_line(&r.columns)];
            lines.extend(r.rows.into_iter().map(Value::Array));
            ndjson(lines)
        }
        Some(Outcome::Push(mut q)) => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(PUSH_BUFFER);
            let mut header = serde_json::to_vec(&columns_line(q.columns())).expect("JSON values serialize");
            header.push(b'\n');
            let _ = tx.try_send(Bytes::from(header));
            // Rows until the LIMIT, or until the client goes away; then the query and its
            // group and internal topics go.
            std::thread::spawn(move || {
                while !q.is_done() && !tx.is_closed() {
                    match q.next_row(Duration::from_millis(100)) {
                        Ok(Some(row)) => {
                            let mut line = serde_json::to_vec(&row).expect("JSON values serialize");
                            line.push(b'\n');
                            if tx.blocking_send(Bytes::from(line)).is_err() {
                                break;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            let line = json!({"@type": "error", "message": e.to_string()});
                            let _ = tx.blocking_send(Bytes::from(format!("{line}\n")));
                            break;
                        }
                    }
                }
                drop(tx);
                if let Err(e) = q.close() {
                    tracing::warn!(error = %e, "closing a push query");
                }
            });
            let mut r = Response::new(streamed(rx));
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
            r
        }
        Some(other) => {
            let _ = outcome(other, sql);
            error(StatusCode::BAD_REQUEST, "POST /query takes a SELECT")
        }
        None => error(StatusCode::INTERNAL_SERVER_ERROR, "the query gave no answer"),
    }
}

fn info(state: &State) -> Answer {
    let (applied, replayed) = state.log.status().unwrap_or((-1, false));
    let queries = state.log.executor().lock().map(|e| e.running_queries()).unwrap_or(0);
    json_answer(
        StatusCode::OK,
        &json!({
            "server": "moldau",
            "version": env!("CARGO_PKG_VERSION"),
            "service_id": state.config.service_id,
            "bootstrap_servers": state.config.bootstrap_servers,
            "listen": state.listen.to_string(),
            "command_topic": state.log.topic(),
            "commands_applied": applied,
            "replayed": replayed,
            "queries": queries,
        }),
    )
}

fn health(state: &State) -> Answer {
    match state.log.status() {
        Ok((applied, replayed)) => json_answer(
            StatusCode::OK,
            &json!({"healthy": true, "details": {"commandRunner": {"isHealthy": true, "commandsApplied": applied, "replayed": replayed}}}),
        ),
        Err(e) => json_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"healthy": false, "details": {"commandRunner": {"isHealthy": false, "error": e}}}),
        ),
    }
}
