//! Planning a query with DataFusion: its SQL parser and planner against the catalog's
//! streams and tables, with DataFusion's scalar and aggregate functions and the user's own
//! (registered through DataFusion's `ScalarUDF` / `AggregateUDF`).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion_catalog::default_table_source::provider_as_source;
use datafusion_catalog::TableProvider;
use datafusion_common::arrow::datatypes::DataType;
use datafusion_common::config::ConfigOptions;
use datafusion_common::tree_node::TreeNode;
use datafusion_common::{DataFusionError, TableReference};
use datafusion_expr::logical_plan::builder::LogicalTableSource;
use datafusion_expr::planner::{ContextProvider, ExprPlanner};
use datafusion_expr::{AggregateUDF, HigherOrderUDF, LogicalPlan, ScalarUDF, TableSource, WindowUDF};
use datafusion_optimizer::analyzer::Analyzer;
use datafusion_optimizer::optimizer::{OptimizerContext, OptimizerRule};
use datafusion_optimizer::push_down_filter::PushDownFilter;
use datafusion_optimizer::push_down_limit::PushDownLimit;
use datafusion_sql::parser::DFParser;
use datafusion_sql::planner::SqlToRel;

use crate::catalog::Catalog;
use crate::error::{Position, Result, SqlError};

/// Plans queries; holds the functions SQL can call.
#[derive(Debug)]
pub struct Planner {
    functions: HashMap<String, Arc<ScalarUDF>>,
    aggregates: HashMap<String, Arc<AggregateUDF>>,
    /// DataFusion's rewrites of special syntax: `COUNT(*)`, `EXTRACT`, `POSITION`,
    /// `SUBSTRING … FROM`, struct and map field access, `UDF(...)` forms.
    expr_planners: Vec<Arc<dyn ExprPlanner>>,
    options: ConfigOptions,
}

impl Default for Planner {
    fn default() -> Self {
        Self::new()
    }
}

impl Planner {
    /// A planner with DataFusion's scalar functions (string, math, date/time, regex) and
    /// aggregates (COUNT, SUM, AVG, MIN, MAX, …).
    pub fn new() -> Self {
        let expr_planners: Vec<Arc<dyn ExprPlanner>> = vec![
            Arc::new(datafusion_functions_aggregate::planner::AggregateFunctionPlanner),
            Arc::new(datafusion_functions::core::planner::CoreFunctionPlanner::default()),
            Arc::new(datafusion_functions::datetime::planner::DatetimeFunctionPlanner),
            Arc::new(datafusion_functions::unicode::planner::UnicodeFunctionPlanner),
        ];
        let mut p = Planner {
            functions: HashMap::new(),
            aggregates: HashMap::new(),
            expr_planners,
            options: ConfigOptions::default(),
        };
        for f in datafusion_functions::all_default_functions() {
            p.register_udf(f);
        }
        for a in datafusion_functions_aggregate::all_default_aggregate_functions() {
            p.register_udaf(a);
        }
        for a in crate::functions::by_offset() {
            p.register_udaf(a);
        }
        p
    }

    /// Registers a scalar function (under its name and aliases).
    pub fn register_udf(&mut self, f: Arc<ScalarUDF>) {
        for alias in f.aliases() {
            self.functions.insert(alias.to_ascii_lowercase(), Arc::clone(&f));
        }
        self.functions.insert(f.name().to_ascii_lowercase(), f);
    }

    /// Registers an aggregate function (under its name and aliases).
    pub fn register_udaf(&mut self, a: Arc<AggregateUDF>) {
        for alias in a.aliases() {
            self.aggregates.insert(alias.to_ascii_lowercase(), Arc::clone(&a));
        }
        self.aggregates.insert(a.name().to_ascii_lowercase(), a);
    }

    /// Plans one query (standard SQL, the ksqlDB clauses already taken out) against `catalog`.
    pub fn plan(&self, catalog: &Catalog, sql: &str) -> Result<LogicalPlan> {
        self.plan_with(catalog, sql, false)
    }

    /// Plans a windowed aggregation: every source has the pseudo columns WINDOWSTART and
    /// WINDOWEND (BIGINT, ms), and they are added to the GROUP BY, so that the query may select
    /// them; the aggregation fills them from each window.
    pub fn plan_windowed(&self, catalog: &Catalog, sql: &str) -> Result<LogicalPlan> {
        self.plan_with(catalog, sql, true)
    }

    /// Plans one expression (a `PARTITION BY`) over `schema`.
    pub fn plan_expr(
        &self,
        catalog: &Catalog,
        text: &str,
        schema: &datafusion_common::DFSchema,
    ) -> Result<datafusion_expr::Expr> {
        use datafusion_sql::sqlparser::dialect::GenericDialect;
        use datafusion_sql::sqlparser::parser::Parser;
        let dialect = GenericDialect {};
        let ast = Parser::new(&dialect)
            .try_with_sql(text)
            .and_then(|mut p| p.parse_expr())
            .map_err(|e| SqlError::Semantic(format!("PARTITION BY {text}: {e}")))?;
        let provider = Provider { planner: self, catalog, windowed: false, pull: None };
        SqlToRel::new(&provider).sql_to_expr(ast, schema, &mut datafusion_sql::planner::PlannerContext::new()).map_err(
            |e| match error(e) {
                SqlError::Semantic(m) => SqlError::Semantic(format!("PARTITION BY {text}: {m}")),
                other => other,
            },
        )
    }

    /// The streams and tables a query names.
    pub fn tables_of(&self, sql: &str) -> Result<Vec<String>> {
        let mut statements = DFParser::parse_sql(sql).map_err(error)?;
        let Some(statement) = statements.pop_front() else { return Ok(Vec::new()) };
        let (tables, _) = datafusion_sql::resolve::resolve_table_references(&statement, true).map_err(error)?;
        Ok(tables.into_iter().map(|t| t.table().to_string()).collect())
    }

    /// Plans a pull query: `table` is read through `provider` (its columns as its store holds
    /// them, with WINDOWSTART and WINDOWEND when windowed). DataFusion's filter and limit
    /// pushdown then hand the provider's scan the filters it takes and the LIMIT.
    pub(crate) fn plan_pull(
        &self,
        catalog: &Catalog,
        sql: &str,
        table: &str,
        provider: Arc<dyn TableProvider>,
    ) -> Result<LogicalPlan> {
        let mut plan = self.plan_inner(catalog, sql, false, Some((table, provider)))?;
        // One top-down pass of each rule reaches the scan of a plan this small: DataFusion's
        // optimizer driver would add passes to a fixpoint, plan hashing and invariant checks
        // (14% of a point lookup's time).
        let config = OptimizerContext::new();
        let rules: [&dyn OptimizerRule; 2] = [&PushDownFilter::new(), &PushDownLimit::new()];
        for rule in rules {
            plan = plan.transform_down(|node| rule.rewrite(node, &config)).map_err(error)?.data;
        }
        Ok(plan)
    }

    fn plan_with(&self, catalog: &Catalog, sql: &str, windowed: bool) -> Result<LogicalPlan> {
        self.plan_inner(catalog, sql, windowed, None)
    }

    fn plan_inner(
        &self,
        catalog: &Catalog,
        sql: &str,
        windowed: bool,
        pull: Option<(&str, Arc<dyn TableProvider>)>,
    ) -> Result<LogicalPlan> {
        let mut statements = DFParser::parse_sql(sql).map_err(|e| at_end(error(e), sql))?;
        let mut statement = match (statements.pop_front(), statements.is_empty()) {
            (Some(s), true) => s,
            (None, _) => return Err(SqlError::Semantic("no query to plan".into())),
            (Some(_), false) => return Err(SqlError::Semantic("one query at a time".into())),
        };
        if windowed {
            add_window_grouping(&mut statement)?;
        }
        if pull.is_none() {
            // `*` is the columns, as in ksqlDB: not the pseudo columns.
            hide_from_wildcards(&mut statement, &PSEUDO_COLUMNS);
        }
        let provider = Provider { planner: self, catalog, windowed, pull };
        let plan = SqlToRel::new(&provider).statement_to_plan(statement).map_err(error)?;
        // DataFusion's analyzer: type coercion (casts where types meet) and the rewrites a
        // plan needs before its expressions can run.
        Analyzer::new().execute_and_check(plan, &self.options, |_, _| {}).map_err(error)
    }
}

/// A plan's top `LIMIT n`, taken off: the plan under it and `n` (the plan itself and `None`
/// without one). `OFFSET` is refused, naming `query` (what kind of query it is in).
pub(crate) fn take_limit<'a>(plan: &'a LogicalPlan, query: &str) -> Result<(&'a LogicalPlan, Option<usize>)> {
    use datafusion_expr::logical_plan::{FetchType, SkipType};
    let LogicalPlan::Limit(l) = plan else { return Ok((plan, None)) };
    let limit = match l.get_fetch_type().map_err(|e| SqlError::Semantic(e.to_string()))? {
        FetchType::Literal(n) => n,
        FetchType::UnsupportedExpr => return Err(SqlError::Semantic("LIMIT takes a number".into())),
    };
    if !matches!(l.get_skip_type(), Ok(SkipType::Literal(0))) {
        return Err(SqlError::Unsupported(format!("OFFSET {query}")));
    }
    Ok((l.input.as_ref(), limit))
}

/// A query's output columns (none of them a key): an answer's columns.
pub(crate) fn answer_columns(
    schema: &datafusion_common::arrow::datatypes::Schema,
) -> Result<Vec<crate::statement::Column>> {
    schema
        .fields()
        .iter()
        .map(|f| {
            crate::types::SqlType::from_arrow(f.data_type())
                .map(|ty| crate::statement::Column { name: f.name().clone(), ty, key: false })
                .map_err(|e| SqlError::Unsupported(format!("column {}: {e}", f.name())))
        })
        .collect()
}

/// A DataFusion error as ours: parser errors with their position, the rest semantic.
fn error(e: DataFusionError) -> SqlError {
    let e = e.find_root().to_string();
    let message = strip_prefixes(&e);
    if let Some(at) = position_in(message) {
        let message = message.split(" at Line:").next().unwrap_or(message).trim().to_string();
        return SqlError::parse(message, at);
    }
    if message.starts_with("This feature is not implemented") {
        return SqlError::Unsupported(message.trim_start_matches("This feature is not implemented: ").to_string());
    }
    SqlError::Semantic(message.to_string())
}

/// A parser error at the end of the text (sqlparser gives those no position) placed just
/// after the text's last character.
fn at_end(e: SqlError, sql: &str) -> SqlError {
    match e {
        SqlError::Semantic(m) if m.contains("found: EOF") => {
            let text = sql.trim_end();
            let line = text.lines().count().max(1) as u64;
            let column = text.lines().last().map_or(0, |l| l.chars().count()) as u64 + 1;
            let message = m.replace("found: EOF", "found the end of the query");
            SqlError::parse(message, Position { line, column })
        }
        other => other,
    }
}

fn strip_prefixes(mut s: &str) -> &str {
    for p in ["SQL error: ", "Error during planning: ", "Schema error: ", "ParserError(\"", "sql parser error: "] {
        while let Some(rest) = s.strip_prefix(p) {
            s = rest;
        }
    }
    s.trim_end_matches("\")").trim()
}

/// "… at Line: 3, Column: 14" in sqlparser's messages.
fn position_in(message: &str) -> Option<Position> {
    let rest = &message[message.find("Line: ")? + "Line: ".len()..];
    let (line, rest) = rest.split_once(',')?;
    let column = rest.trim_start().strip_prefix("Column: ")?;
    let column: String = column.chars().take_while(char::is_ascii_digit).collect();
    Some(Position { line: line.trim().parse().ok()?, column: column.parse().ok()? })
}

/// The pseudo columns every source has (see `SourceDef::schema`).
pub const PSEUDO_COLUMNS: [&str; 3] = ["rowtime", "rowpartition", "rowoffset"];

/// Makes every `*` of the query's SELECT leave out `names` (as `* EXCLUDE (…)` would), unless
/// it already says what to exclude.
fn hide_from_wildcards(statement: &mut datafusion_sql::parser::Statement, names: &[&str]) {
    use datafusion_sql::sqlparser::ast::{
        ExcludeSelectItem, Ident, ObjectName, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Statement as Ast,
        TableFactor,
    };
    let datafusion_sql::parser::Statement::Statement(inner) = statement else { return };
    let Ast::Query(q) = inner.as_mut() else { return };
    let SetExpr::Select(select) = q.body.as_mut() else { return };
    // Each source by the name its columns are qualified with: with a join, a plain `*` becomes
    // one `t.*` per source, as an unqualified excluded name would be ambiguous.
    let mut sources = Vec::new();
    for t in &select.from {
        for factor in std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)) {
            if let TableFactor::Table { name, alias, .. } = factor {
                sources.push(match alias {
                    Some(a) => ObjectName::from(vec![a.name.clone()]),
                    None => name.clone(),
                });
            }
        }
    }
    let exclude =
        || Some(ExcludeSelectItem::Multiple(names.iter().map(|n| ObjectName::from(vec![Ident::new(*n)])).collect()));
    let mut projection = Vec::with_capacity(select.projection.len());
    for item in std::mem::take(&mut select.projection) {
        match item {
            SelectItem::Wildcard(mut o) if o.opt_exclude.is_none() && o.opt_except.is_none() => {
                o.opt_exclude = exclude();
                if sources.len() > 1 {
                    for s in &sources {
                        projection.push(SelectItem::QualifiedWildcard(
                            SelectItemQualifiedWildcardKind::ObjectName(s.clone()),
                            o.clone(),
                        ));
                    }
                } else {
                    projection.push(SelectItem::Wildcard(o));
                }
            }
            SelectItem::QualifiedWildcard(kind, mut o) if o.opt_exclude.is_none() && o.opt_except.is_none() => {
                o.opt_exclude = exclude();
                projection.push(SelectItem::QualifiedWildcard(kind, o));
            }
            other => projection.push(other),
        }
    }
    select.projection = projection;
}

/// The window pseudo columns of a windowed aggregation.
pub const WINDOW_COLUMNS: [&str; 2] = ["windowstart", "windowend"];

/// Adds WINDOWSTART and WINDOWEND to the query's GROUP BY (which a windowed aggregation must
/// have).
fn add_window_grouping(statement: &mut datafusion_sql::parser::Statement) -> Result<()> {
    use datafusion_sql::sqlparser::ast::{Expr as AstExpr, GroupByExpr, Ident, SetExpr, Statement as Ast};
    let not_grouped = || SqlError::Semantic("a WINDOW needs a GROUP BY: windows are aggregated per key".into());
    let datafusion_sql::parser::Statement::Statement(inner) = statement else { return Err(not_grouped()) };
    let Ast::Query(q) = inner.as_mut() else { return Err(not_grouped()) };
    let SetExpr::Select(select) = q.body.as_mut() else { return Err(not_grouped()) };
    match &mut select.group_by {
        GroupByExpr::Expressions(exprs, _) if !exprs.is_empty() => {
            for c in WINDOW_COLUMNS {
                exprs.push(AstExpr::Identifier(Ident::new(c)));
            }
            Ok(())
        }
        GroupByExpr::All(_) => Err(SqlError::Unsupported("GROUP BY ALL with a WINDOW".into())),
        _ => Err(not_grouped()),
    }
}

/// What DataFusion's planner asks about: the catalog's sources and the functions.
struct Provider<'a> {
    planner: &'a Planner,
    catalog: &'a Catalog,
    windowed: bool,
    /// A pull query's table and what reads it.
    pull: Option<(&'a str, Arc<dyn TableProvider>)>,
}

impl ContextProvider for Provider<'_> {
    fn get_table_source(&self, name: TableReference) -> datafusion_common::Result<Arc<dyn TableSource>> {
        let source = self.catalog.get(name.table()).ok_or_else(|| {
            DataFusionError::Plan(format!(
                "no stream or table named {} (SHOW STREAMS and SHOW TABLES list them)",
                name.table()
            ))
        })?;
        let schema = match &self.pull {
            Some((table, provider)) if *table == source.name => return Ok(provider_as_source(Arc::clone(provider))),
            _ if self.windowed => source.windowed_schema(),
            _ => source.schema(),
        };
        Ok(Arc::new(LogicalTableSource::new(schema)))
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        &self.planner.expr_planners
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.planner.functions.get(&name.to_ascii_lowercase()).cloned()
    }

    fn get_higher_order_meta(&self, _name: &str) -> Option<Arc<HigherOrderUDF>> {
        None
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.planner.aggregates.get(&name.to_ascii_lowercase()).cloned()
    }

    fn get_window_meta(&self, _name: &str) -> Option<Arc<WindowUDF>> {
        None
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        &self.planner.options
    }

    fn udf_names(&self) -> Vec<String> {
        self.planner.functions.keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        Vec::new()
    }

    fn udaf_names(&self) -> Vec<String> {
        self.planner.aggregates.keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::SourceDef;
    use crate::statement::{parse, Statement};

    fn catalog() -> Catalog {
        let mut c = Catalog::new();
        for sql in [
            "CREATE STREAM pageviews (userid STRING KEY, page STRING, viewtime BIGINT, price DOUBLE) WITH (kafka_topic='pv', value_format='JSON')",
            "CREATE TABLE users (id STRING PRIMARY KEY, name STRING, region STRING) WITH (kafka_topic='users', value_format='JSON')",
        ] {
            let Statement::CreateSource(s) = parse(sql).unwrap().remove(0).statement else { panic!() };
            c.add(SourceDef::from_create(&s).unwrap(), false, false).unwrap();
        }
        c
    }

    fn query_sql(sql: &str) -> String {
        match parse(sql).unwrap().remove(0).statement {
            Statement::Query(q) | Statement::Explain(q) => q.sql,
            Statement::CreateAs(c) => c.query.sql,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn should_plan_projections_filters_functions_and_aggregates() {
        let (p, c) = (Planner::new(), catalog());
        let plan = p
            .plan(&c, &query_sql("SELECT upper(page) AS p, abs(price) * 2, CASE WHEN price > 10 THEN 'big' ELSE 'small' END, CAST(viewtime AS DOUBLE) FROM pageviews WHERE page LIKE '/a%' AND price IS NOT NULL"))
            .unwrap();
        let text = plan.display_indent().to_string();
        assert!(text.contains("Filter") && text.contains("Projection"), "{text}");
        let plan = p
            .plan(&c, &query_sql("SELECT page, COUNT(*), SUM(price), AVG(price), MIN(price), MAX(price), COUNT(DISTINCT userid) FROM pageviews GROUP BY page HAVING COUNT(*) > 1"))
            .unwrap();
        assert!(plan.display_indent().to_string().contains("Aggregate"), "{}", plan.display_indent());
        let windowed = query_sql("CREATE TABLE c AS SELECT page, COUNT(*) FROM pageviews WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY page EMIT CHANGES");
        p.plan(&c, &windowed).unwrap();
        p.plan(&c, &query_sql("SELECT p.page, u.name FROM pageviews p LEFT JOIN users u ON p.userid = u.id")).unwrap();
    }

    #[test]
    fn should_name_unknown_columns_sources_and_misplaced_aggregates() {
        let (p, c) = (Planner::new(), catalog());
        let e = p.plan(&c, &query_sql("SELECT pagee FROM pageviews")).unwrap_err();
        assert!(matches!(e, SqlError::Semantic(_)) && e.to_string().contains("pagee"), "{e}");
        let e = p.plan(&c, &query_sql("SELECT * FROM nope")).unwrap_err();
        assert!(e.to_string().contains("no stream or table named nope"), "{e}");
        let e = p.plan(&c, &query_sql("SELECT page, price, COUNT(*) FROM pageviews GROUP BY page")).unwrap_err();
        assert!(e.to_string().contains("price"), "a non-aggregated column outside GROUP BY is named: {e}");
        let e = p.plan(&c, &query_sql("SELECT page + 1 FROM pageviews WHERE price = 'x'")).unwrap_err();
        assert!(matches!(e, SqlError::Semantic(_)), "{e}");
        let e = p.plan(&c, &query_sql("SELECT nosuchfn(page) FROM pageviews")).unwrap_err();
        assert!(e.to_string().contains("nosuchfn"), "{e}");
        let e = p.plan(&c, "SELECT FROM WHERE").unwrap_err();
        assert!(e.to_string().len() > 10, "{e}");
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;

    #[test]
    fn should_place_an_error_at_the_end_of_the_query_just_after_it() {
        let e = Planner::new().plan(&Catalog::new(), "SELECT a FROM t\n  WHERE a >   \n").unwrap_err();
        let at = e.position().unwrap_or_else(|| panic!("a position: {e}"));
        assert_eq!((at.line, at.column), (2, 12), "{e}");
        assert!(e.to_string().contains("the end of the query"), "{e}");
    }

    #[test]
    fn should_give_parser_errors_their_line_and_column() {
        let e = Planner::new().plan(&Catalog::new(), "SELECT a FROM t\n  WHERE a = = 1").unwrap_err();
        let at = e.position().unwrap_or_else(|| panic!("a position: {e}"));
        assert_eq!(at.line, 2, "{e}");
        assert!(e.to_string().contains("="), "{e}");
    }
}
