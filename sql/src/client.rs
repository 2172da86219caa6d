//! A blocking client of the server's HTTP API (`moldau sql --server URL`, and tests): one
//! HTTP/1.1 request per connection; a query's newline-delimited rows are read on a thread
//! and handed over as they arrive, so a caller can wait with a timeout and cancel.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{Result, SqlError};

/// How long connecting and writing a request may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn io(what: &str, e: impl std::fmt::Display) -> SqlError {
    SqlError::Execution(format!("{what}: {e}"))
}

/// A server's address.
#[derive(Debug, Clone)]
pub struct Client {
    host: String,
}

/// The status and head of a response, and its body's reader.
struct Head {
    status: u16,
    chunked: bool,
    length: Option<usize>,
    reader: BufReader<TcpStream>,
}

impl Client {
    /// A client of the server at `url` (`http://host:port` or `host:port`).
    pub fn new(url: &str) -> Result<Self> {
        let rest = url.strip_prefix("http://").unwrap_or(url);
        if url.starts_with("https://") {
            return Err(SqlError::Execution(format!("{url}: the server speaks plain HTTP")));
        }
        let host = rest.trim_end_matches('/').to_string();
        if host.is_empty() || host.contains('/') {
            return Err(SqlError::Execution(format!("{url}: expected http://host:port")));
        }
        Ok(Client { host })
    }

    fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Head> {
        let addr = self
            .host
            .to_socket_addrs()
            .map_err(|e| io(&format!("resolving {}", self.host), e))?
            .next()
            .ok_or_else(|| SqlError::Execution(format!("{} has no address", self.host)))?;
        let mut stream =
            TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| io(&format!("connecting to {addr}"), e))?;
        stream.set_write_timeout(Some(CONNECT_TIMEOUT)).map_err(|e| io("configuring the connection", e))?;
        let body = body.map(|b| serde_json::to_vec(b).expect("JSON values serialize")).unwrap_or_default();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\n",
            self.host
        );
        if method == "POST" {
            request.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).and_then(|_| stream.write_all(&body)).map_err(|e| io("sending", e))?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| io("reading the answer", e))?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| SqlError::Execution(format!("not an HTTP answer: {line:?}")))?;
        let (mut chunked, mut length) = (false, None);
        loop {
            line.clear();
            reader.read_line(&mut line).map_err(|e| io("reading the answer", e))?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                    chunked = true;
                } else if k == "content-length" {
                    length = v.parse().ok();
                }
            }
        }
        Ok(Head { status, chunked, length, reader })
    }

    /// `GET path`: the status and the JSON body.
    pub fn get(&self, path: &str) -> Result<(u16, Value)> {
        let head = self.send("GET", path, None)?;
        let status = head.status;
        Ok((status, json_body(head)?))
    }

    /// `POST /statements`: the status and the JSON answer (an array of results, or an error).
    pub fn statements(&self, sql: &str, properties: &Value) -> Result<(u16, Value)> {
        let head = self.send("POST", "/statements", Some(&json!({"sql": sql, "properties": properties})))?;
        let status = head.status;
        Ok((status, json_body(head)?))
    }

    /// `POST /query`: its lines as they arrive (an error status comes as one line with the
    /// error object).
    pub fn query(&self, sql: &str, properties: &Value) -> Result<QueryStream> {
        let head = self.send("POST", "/query", Some(&json!({"sql": sql, "properties": properties})))?;
        let status = head.status;
        let socket = head.reader.get_ref().try_clone().map_err(|e| io("the connection", e))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut body = Body::new(head);
            let mut pending = Vec::new();
            loop {
                match body.next_data() {
                    Ok(Some(data)) => {
                        pending.extend_from_slice(&data);
                        while let Some(at) = pending.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = pending.drain(..=at).collect();
                            let v = serde_json::from_slice::<Value>(&line)
                                .map_err(|e| SqlError::Execution(format!("a line of the answer: {e}")));
                            if tx.send(v).is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => {
                        // An error answer is one JSON object without a newline.
                        if !pending.iter().all(u8::is_ascii_whitespace) {
                            let v = serde_json::from_slice::<Value>(&pending)
                                .map_err(|e| SqlError::Execution(format!("the answer: {e}")));
                            let _ = tx.send(v);
                        }
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        Ok(QueryStream { status, lines: rx, socket })
    }
}

/// A response body, chunked or not.
struct Body {
    head: Head,
    done: bool,
}

impl Body {
    fn new(head: Head) -> Self {
        Body { head, done: false }
    }

    /// The next piece of the body; `None` at its end.
    fn next_data(&mut self) -> Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        let r = &mut self.head.reader;
        if !self.head.chunked {
            let mut out = Vec::new();
            match self.head.length {
                Some(n) => r.take(n as u64).read_to_end(&mut out),
                None => r.read_to_end(&mut out),
            }
            .map_err(|e| io("reading the answer", e))?;
            self.done = true;
            return Ok(Some(out));
        }
        let mut line = String::new();
        r.read_line(&mut line).map_err(|e| io("reading the answer", e))?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| SqlError::Execution(format!("a malformed chunk size: {line:?}")))?;
        if size == 0 {
            self.done = true;
            return Ok(None);
        }
        let mut data = vec![0; size];
        r.read_exact(&mut data).map_err(|e| io("reading the answer", e))?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf).map_err(|e| io("reading the answer", e))?;
        Ok(Some(data))
    }
}

fn json_body(head: Head) -> Result<Value> {
    let mut body = Body::new(head);
    let mut all = Vec::new();
    while let Some(d) = body.next_data()? {
        all.extend_from_slice(&d);
    }
    serde_json::from_slice(&all).map_err(|e| SqlError::Execution(format!("the answer is not JSON: {e}")))
}

/// A query's answer: its status, then its lines as they arrive.
#[derive(Debug)]
pub struct QueryStream {
    status: u16,
    lines: Receiver<Result<Value>>,
    socket: TcpStream,
}

/// What [`QueryStream::next`] found.
#[derive(Debug)]
pub enum Line {
    /// A line of the answer.
    Value(Value),
    /// Nothing within the timeout.
    Pending,
    /// The answer ended.
    End,
}

impl QueryStream {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The next line, waiting at most `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Result<Line> {
        match self.lines.recv_timeout(timeout) {
            Ok(Ok(v)) => Ok(Line::Value(v)),
            Ok(Err(e)) => Err(e),
            Err(RecvTimeoutError::Timeout) => Ok(Line::Pending),
            Err(RecvTimeoutError::Disconnected) => Ok(Line::End),
        }
    }

    /// Ends the query: closes the connection (the server then stops a push query).
    pub fn cancel(self) {
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}
