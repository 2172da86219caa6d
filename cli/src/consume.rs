//! `moldau consume`: kafka-console-consumer.sh and kcat -C — print a topic's records.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message, Timestamp};
use rdkafka::{Offset, TopicPartitionList};

use crate::client::{key_value, ConnArgs};
use crate::topics::partition_count;

/// Flags of `moldau consume`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  moldau consume --topic greetings --from-beginning --print-key --key-separator : --max-messages 10\n  moldau consume --topic orders --group audit --isolation read_committed\n  moldau consume --topic orders --partition 0 --offset 42 --format '%p@%o %k=%s\\n'"
)]
pub(crate) struct ConsumeArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// The topic.
    #[arg(long, short = 't')]
    topic: String,
    /// Start at the beginning when there is no committed offset (default: only new records).
    #[arg(long)]
    from_beginning: bool,
    /// Consume in this group (subscribe, commit offsets); without it partitions are assigned.
    #[arg(long, short = 'g')]
    group: Option<String>,
    /// Print the key.
    #[arg(long)]
    print_key: bool,
    /// Print the offset.
    #[arg(long)]
    print_offset: bool,
    /// Print the timestamp (CreateTime:ms or LogAppendTime:ms).
    #[arg(long)]
    print_timestamp: bool,
    /// Print the partition.
    #[arg(long)]
    print_partition: bool,
    /// Print the headers (k:v,k:v or NO_HEADERS).
    #[arg(long)]
    print_headers: bool,
    /// Separator between the printed fields.
    #[arg(long, default_value = "\t")]
    key_separator: String,
    /// Stop after this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Stop when no record arrives for this long (default: run until Ctrl-C).
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// read_uncommitted shows records of open and aborted transactions too.
    #[arg(long, default_value = "read_uncommitted", value_parser = ["read_committed", "read_uncommitted"])]
    isolation: String,
    /// Read only this partition (with --offset).
    #[arg(long, conflicts_with = "group")]
    partition: Option<i32>,
    /// With --partition: a start offset, earliest or latest.
    #[arg(long, requires = "partition")]
    offset: Option<String>,
    /// kcat-style format: %t topic, %p partition, %o offset, %k key, %s value, %T timestamp,
    /// %h headers, %K key length, %S value length, %% a percent sign, \n \t escapes.
    #[arg(long)]
    format: Option<String>,
    /// Any other consumer property, key=value (repeatable).
    #[arg(long = "consumer-property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
}

/// Runs `moldau consume`.
pub(crate) async fn run(a: ConsumeArgs) -> Result<()> {
    let probe = a.conn.consumer(None)?;
    let partitions = partition_count(&a.conn, &probe, &a.topic)?;
    drop(probe);
    let format = a.format.as_deref().map(parse_format).transpose()?;
    let mut config = a.conn.client_config()?;
    config
        .set("isolation.level", &a.isolation)
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", if a.from_beginning { "earliest" } else { "latest" });
    match &a.group {
        Some(g) => {
            // Offsets are stored only for records printed: closing the consumer polls (and
            // would otherwise store) whatever was fetched but never printed.
            config.set("group.id", g).set("enable.auto.commit", "true").set("enable.auto.offset.store", "false");
        }
        None => {
            config.set("group.id", "moldau-console").set("enable.auto.commit", "false");
        }
    }
    for p in &a.properties {
        let (k, v) = key_value("--consumer-property", p)?;
        config.set(k, v);
    }
    let consumer: BaseConsumer = config.create().context("creating the consumer")?;
    if a.group.is_some() {
        consumer.subscribe(&[&a.topic]).context("subscribing")?;
    } else {
        let mut tpl = TopicPartitionList::new();
        let start = if a.from_beginning { Offset::Beginning } else { Offset::End };
        match a.partition {
            Some(p) => {
                if p < 0 || p as usize >= partitions {
                    bail!(
                        "topic '{}' has partitions 0..{}; --partition {p} is not one of them",
                        a.topic,
                        partitions - 1
                    );
                }
                let offset = match a.offset.as_deref() {
                    None => start,
                    Some("earliest") => Offset::Beginning,
                    Some("latest") => Offset::End,
                    Some(n) => Offset::Offset(
                        n.parse().with_context(|| format!("--offset is a number, earliest or latest, got '{n}'"))?,
                    ),
                };
                tpl.add_partition_offset(&a.topic, p, offset)?;
            }
            None => {
                for p in 0..partitions as i32 {
                    tpl.add_partition_offset(&a.topic, p, start)?;
                }
            }
        }
        consumer.assign(&tpl).context("assigning partitions")?;
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut count = 0u64;
    let idle_limit = a.timeout_ms.map(Duration::from_millis);
    let mut last = Instant::now();
    let mut line = Vec::new();
    while a.max_messages.is_none_or(|m| count < m) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                line.clear();
                match &format {
                    Some(f) => render_format(f, &m, &mut line),
                    None => render_default(&a, &m, &mut line),
                }
                out.write_all(&line).context("writing output")?;
                if a.group.is_some() {
                    consumer.store_offset_from_message(&m).context("storing the offset")?;
                }
                count += 1;
                last = Instant::now();
            }
            Some(Err(e)) => bail!("consuming {}: {e}", a.topic),
            None => {
                out.flush().context("writing output")?;
                if idle_limit.is_some_and(|l| last.elapsed() >= l) {
                    break;
                }
            }
        }
    }
    out.flush().context("writing output")?;
    drop(out);
    if a.group.is_some() {
        // Commit what was printed before leaving the group.
        let _ = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync);
    }
    eprintln!("Processed a total of {count} messages");
    Ok(())
}

/// Kafka's console line: timestamp, partition, offset, headers, key, value as asked.
fn render_default(a: &ConsumeArgs, m: &BorrowedMessage<'_>, out: &mut Vec<u8>) {
    let sep = a.key_separator.as_bytes();
    let mut fields: Vec<Vec<u8>> = Vec::new();
    if a.print_timestamp {
        fields.push(match m.timestamp() {
            Timestamp::CreateTime(t) => format!("CreateTime:{t}").into_bytes(),
            Timestamp::LogAppendTime(t) => format!("LogAppendTime:{t}").into_bytes(),
            Timestamp::NotAvailable => b"NO_TIMESTAMP".to_vec(),
        });
    }
    if a.print_partition {
        fields.push(format!("Partition:{}", m.partition()).into_bytes());
    }
    if a.print_offset {
        fields.push(format!("Offset:{}", m.offset()).into_bytes());
    }
    if a.print_headers {
        fields.push(headers_text(m, b"NO_HEADERS"));
    }
    if a.print_key {
        fields.push(m.key().map_or_else(|| b"null".to_vec(), <[u8]>::to_vec));
    }
    fields.push(m.payload().map_or_else(|| b"null".to_vec(), <[u8]>::to_vec));
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(sep);
        }
        out.extend_from_slice(f);
    }
    out.push(b'\n');
}

fn headers_text(m: &BorrowedMessage<'_>, none: &[u8]) -> Vec<u8> {
    let Some(hs) = m.headers().filter(|h| h.count() > 0) else { return none.to_vec() };
    let mut out = Vec::new();
    for (i, h) in hs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(h.key.as_bytes());
        out.push(b':');
        out.extend_from_slice(h.value.unwrap_or(b"null"));
    }
    out
}

/// One piece of a `--format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Literal bytes.
    Text(Vec<u8>),
    /// A `%` placeholder's letter.
    Field(char),
}

/// Parses a kcat-style format; the error names an unknown placeholder.
pub(crate) fn parse_format(f: &str) -> Result<Vec<Piece>> {
    let mut out = Vec::new();
    let mut text = Vec::new();
    let mut chars = f.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('%') => text.push(b'%'),
                Some(l @ ('t' | 'p' | 'o' | 'k' | 's' | 'T' | 'h' | 'K' | 'S')) => {
                    if !text.is_empty() {
                        out.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    out.push(Piece::Field(l));
                }
                Some(other) => bail!("--format: unknown placeholder %{other} (known: %t %p %o %k %s %T %h %K %S %%)"),
                None => bail!("--format ends with a lone %"),
            },
            '\\' => match chars.next() {
                Some('n') => text.push(b'\n'),
                Some('t') => text.push(b'\t'),
                Some('\\') => text.push(b'\\'),
                Some(other) => {
                    text.push(b'\\');
                    let mut buf = [0u8; 4];
                    text.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
                }
                None => text.push(b'\\'),
            },
            other => {
                let mut buf = [0u8; 4];
                text.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

fn render_format(f: &[Piece], m: &BorrowedMessage<'_>, out: &mut Vec<u8>) {
    for piece in f {
        match piece {
            Piece::Text(t) => out.extend_from_slice(t),
            Piece::Field('t') => out.extend_from_slice(m.topic().as_bytes()),
            Piece::Field('p') => out.extend_from_slice(m.partition().to_string().as_bytes()),
            Piece::Field('o') => out.extend_from_slice(m.offset().to_string().as_bytes()),
            Piece::Field('k') => out.extend_from_slice(m.key().unwrap_or_default()),
            Piece::Field('s') => out.extend_from_slice(m.payload().unwrap_or_default()),
            Piece::Field('T') => out.extend_from_slice(m.timestamp().to_millis().unwrap_or(-1).to_string().as_bytes()),
            Piece::Field('h') => out.extend_from_slice(&headers_text(m, b"")),
            Piece::Field('K') => out.extend_from_slice(m.key().map_or(-1, |k| k.len() as i64).to_string().as_bytes()),
            Piece::Field('S') => {
                out.extend_from_slice(m.payload().map_or(-1, |v| v.len() as i64).to_string().as_bytes())
            }
            Piece::Field(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_parse_kcat_placeholders_and_escapes() {
        let f = parse_format("%p@%o %k=%s\\n100%%").unwrap();
        assert_eq!(
            f,
            vec![
                Piece::Field('p'),
                Piece::Text(b"@".to_vec()),
                Piece::Field('o'),
                Piece::Text(b" ".to_vec()),
                Piece::Field('k'),
                Piece::Text(b"=".to_vec()),
                Piece::Field('s'),
                Piece::Text(b"\n100%".to_vec()),
            ]
        );
        assert!(parse_format("%x").unwrap_err().to_string().contains("%x"));
    }
}
