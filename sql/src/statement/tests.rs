use super::*;
use crate::error::SqlError;

fn one(sql: &str) -> Statement {
    let mut v = parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(v.len(), 1, "{v:?}");
    v.remove(0).statement
}

fn err(sql: &str) -> SqlError {
    parse(sql).expect_err(sql)
}

#[test]
fn should_parse_create_stream_with_key_columns_and_properties() {
    let s = one("CREATE STREAM pageviews (viewtime BIGINT, UserId VARCHAR KEY, page STRING, price DECIMAL(10, 2))\n\
         WITH (kafka_topic='pageviews', value_format='JSON', partitions=3, timestamp='viewtime');");
    let Statement::CreateSource(c) = s else { panic!("{s:?}") };
    assert_eq!(c.kind, SourceKind::Stream);
    assert_eq!(c.name, "pageviews");
    assert_eq!(c.columns.len(), 4);
    assert_eq!(c.columns[1], Column { name: "userid".into(), ty: SqlType::String, key: true });
    assert_eq!(c.columns[3].ty, SqlType::Decimal(10, 2));
    assert_eq!(c.props["kafka_topic"], PropValue::Text("pageviews".into()));
    assert_eq!(c.props["partitions"], PropValue::Number(3));
}

#[test]
fn should_parse_tables_with_primary_keys_and_refuse_the_wrong_key_kind() {
    let Statement::CreateSource(c) =
        one("CREATE TABLE users (id STRING PRIMARY KEY, name STRING) WITH (kafka_topic='users', value_format='JSON')")
    else {
        panic!()
    };
    assert!(c.columns[0].key && c.kind == SourceKind::Table);
    assert!(err("CREATE TABLE t (id STRING KEY) WITH (kafka_topic='t')").to_string().contains("PRIMARY KEY"));
    assert!(err("CREATE STREAM s (id STRING PRIMARY KEY) WITH (kafka_topic='s')").to_string().contains("KEY columns"));
}

#[test]
fn should_take_ksqldb_clauses_out_of_a_query_keeping_positions() {
    let sql = "CREATE TABLE counts AS SELECT page, COUNT(*) AS n FROM pageviews\n\
               WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 10 SECONDS)\n\
               GROUP BY page EMIT FINAL;";
    let Statement::CreateAs(c) = one(sql) else { panic!() };
    assert_eq!(c.kind, SourceKind::Table);
    assert_eq!(
        c.query.window,
        Some(WindowSpec {
            kind: WindowKind::Tumbling { size: Duration::from_secs(60) },
            grace: Some(Duration::from_secs(10))
        })
    );
    assert_eq!(c.query.emit, Some(Emit::Final));
    let lines: Vec<&str> = c.query.sql.lines().collect();
    assert_eq!(lines[0], "SELECT page, COUNT(*) AS n FROM pageviews");
    assert!(lines[1].trim().is_empty(), "the window clause is blanked: {:?}", lines[1]);
    assert_eq!(lines[2].trim_end(), "GROUP BY page");
    assert_eq!(lines[1].len(), "WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 10 SECONDS)".len(), "columns kept");
}

#[test]
fn should_parse_hopping_and_session_windows_partition_by_and_emit_changes() {
    let Statement::Query(q) =
        one("SELECT * FROM s WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY 5 SECONDS) GROUP BY k EMIT CHANGES LIMIT 3")
    else {
        panic!()
    };
    assert_eq!(
        q.window.unwrap().kind,
        WindowKind::Hopping { size: Duration::from_secs(10), advance: Duration::from_secs(5) }
    );
    assert_eq!(q.emit, Some(Emit::Changes));
    assert!(q.sql.trim_end().ends_with("LIMIT 3"), "{}", q.sql);
    let Statement::Query(q) = one("SELECT * FROM s WINDOW SESSION (30 SECONDS) GROUP BY k") else { panic!() };
    assert_eq!(q.window.unwrap().kind, WindowKind::Session { gap: Duration::from_secs(30) });
    let Statement::CreateAs(c) =
        one("CREATE STREAM by_user AS SELECT * FROM s PARTITION BY lower(userid) EMIT CHANGES")
    else {
        panic!()
    };
    assert_eq!(c.query.partition_by.as_deref(), Some("lower(userid)"));
    assert_eq!(c.query.sql.trim_end(), "SELECT * FROM s");
    assert!(err("SELECT * FROM s WINDOW HOPPING (SIZE 1 SECOND, ADVANCE BY 5 SECONDS) GROUP BY k")
        .to_string()
        .contains("ADVANCE BY"));
}

#[test]
fn should_parse_the_other_statements_of_a_script() {
    let v = parse(
        "SHOW STREAMS; LIST TABLES;\nDESCRIBE users EXTENDED; EXPLAIN SELECT * FROM s;\n\
         DROP TABLE IF EXISTS users DELETE TOPIC; TERMINATE ctas_counts_1;\nINSERT INTO s2 SELECT * FROM s;",
    )
    .unwrap();
    let s: Vec<&Statement> = v.iter().map(|l| &l.statement).collect();
    assert_eq!(s[0], &Statement::Show(Show::Streams));
    assert_eq!(s[1], &Statement::Show(Show::Tables));
    assert_eq!(s[2], &Statement::Describe { name: "users".into(), extended: true });
    assert!(matches!(s[3], Statement::Explain(_)));
    assert_eq!(
        s[4],
        &Statement::Drop { kind: SourceKind::Table, name: "users".into(), if_exists: true, delete_topic: true }
    );
    assert_eq!(s[5], &Statement::Terminate { id: "ctas_counts_1".into() });
    assert!(matches!(s[6], Statement::InsertInto { target, .. } if target == "s2"));
    assert_eq!(v[2].at, Position { line: 2, column: 1 });
}

#[test]
fn should_name_line_column_and_token_of_a_syntax_error() {
    let e = err("CREATE STREAM s (a INT,\n  b FLOAT8X) WITH (kafka_topic='s')");
    let at = e.position().expect("a parse error");
    assert_eq!((at.line, at.column), (2, 5), "{e}");
    assert!(e.to_string().contains("FLOAT8X"), "{e}");
    let e = err("SHOW STREEMS");
    assert!(e.to_string().contains("STREEMS") && e.to_string().contains("line 1, column 6"), "{e}");
    let e = err("UPSERT INTO x VALUES (1)");
    assert!(e.to_string().contains("UPSERT"), "{e}");
    let e = err("SELECT 'unterminated");
    assert!(matches!(e, SqlError::Parse { .. }), "{e}");
    assert!(matches!(
        err("CREATE STREAM s (m MAP<STRING, INT>) WITH (kafka_topic='s')"),
        SqlError::Parse { .. } | SqlError::Unsupported(_)
    ));
}

#[test]
fn should_keep_each_statements_text() {
    let l = parse("CREATE STREAM s (v INT) WITH (kafka_topic='t', value_format='JSON');\n  SELECT v\n FROM s EMIT CHANGES ;SHOW TOPICS").unwrap();
    let texts: Vec<&str> = l.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "CREATE STREAM s (v INT) WITH (kafka_topic='t', value_format='JSON')",
            "SELECT v\n FROM s EMIT CHANGES",
            "SHOW TOPICS"
        ]
    );
}

#[test]
fn should_parse_insert_values() {
    assert_eq!(
        one("INSERT INTO s (a, b, c, d) VALUES ('x', -1.5, NULL, true)"),
        Statement::InsertValues {
            target: "s".into(),
            columns: Some(vec!["a".into(), "b".into(), "c".into(), "d".into()]),
            values: vec![Literal::Text("x".into()), Literal::Number("-1.5".into()), Literal::Null, Literal::Bool(true)],
        }
    );
    assert_eq!(
        one("INSERT INTO s VALUES (1)"),
        Statement::InsertValues { target: "s".into(), columns: None, values: vec![Literal::Number("1".into())] }
    );
    let e = parse("INSERT INTO s VALUES (1, now())").unwrap_err();
    assert!(e.to_string().contains("expected a value") && e.position().is_some(), "{e}");
    let e = parse("INSERT INTO s (a VALUES (1)").unwrap_err();
    assert!(e.to_string().contains("')' after the columns"), "{e}");
}
