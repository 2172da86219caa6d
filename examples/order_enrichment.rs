//! Order enrichment: a stream of orders left-joined with a table of customers, on an
//! embedded 3-broker broker-sim cluster.

use std::time::Duration;

use anyhow::{bail, Context};
use moldau_engine::{KafkaStreams, ProcessingGuarantee, StreamsConfig};
use moldau_examples::{self as ex, EnrichedOrder, Order};

fn main() -> anyhow::Result<()> {
    ex::init_logging();
    let cluster = ex::start_cluster(3)?;
    let bootstrap = cluster.bootstrap_servers().to_string();
    ex::create_topics(&bootstrap, &[("customers", 3), ("orders", 3), ("enriched-orders", 3)], 3)?;
    let producer = ex::producer(&bootstrap)?;
    for (id, name) in [("c1", "Ada"), ("c2", "Grace"), ("c3", "Edsger")] {
        ex::send(&producer, "customers", id.as_bytes(), name.as_bytes(), Some(1))?;
    }
    ex::flush(&producer)?;
    let state = tempfile::tempdir()?;
    let mut config = StreamsConfig::new("order-enrichment", &bootstrap)
        .with_guarantee(ProcessingGuarantee::ExactlyOnceV2)
        .with_state_dir(state.path());
    // A join task waits this long for a partition with nothing fetched yet, so the customers
    // (earlier timestamps) are in the table before the orders that look them up: without it, an
    // order fetched before its partition's customers was joined with no customer.
    config.max_task_idle = Duration::from_secs(1);
    let mut app = KafkaStreams::new(ex::order_enrichment()?, config)?;
    app.start()?;
    let orders =
        [("c1", 1, "keyboard", 4_900), ("c2", 2, "compiler", 0), ("c9", 3, "mystery box", 999), ("c3", 4, "pen", 150)];
    for (customer, id, item, cents) in orders {
        let o = Order { id, item: item.into(), cents };
        ex::send(&producer, "orders", customer.as_bytes(), &serde_json::to_vec(&o)?, Some(10 + id as i64))?;
    }
    ex::flush(&producer)?;
    let reader = ex::reader(&bootstrap, "order-demo-reader", &["enriched-orders"])?;
    let mut got = Vec::new();
    ex::read_until(
        &reader,
        Duration::from_secs(60),
        |_, v| {
            if let Ok(e) = serde_json::from_slice::<EnrichedOrder>(v.unwrap_or_default()) {
                println!(
                    "  order {} ({}) by {}",
                    e.order.id,
                    e.order.item,
                    e.customer.as_deref().unwrap_or("<unknown customer>")
                );
                got.push(e);
            }
        },
        |n| n >= orders.len(),
    );
    app.close().context("closing")?;
    drop(reader);
    drop(producer);
    cluster.shutdown();
    got.sort_by_key(|e| e.order.id);
    let names: Vec<Option<&str>> = got.iter().map(|e| e.customer.as_deref()).collect();
    if names != [Some("Ada"), Some("Grace"), None, Some("Edsger")] {
        bail!("unexpected enrichment: {got:?}");
    }
    println!("{} orders enriched", got.len());
    Ok(())
}
