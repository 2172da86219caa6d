//! The deterministic simulation of broker-sim's cluster core over a range of seeds.
//!
//! ```text
//! cargo run -p moldau-broker-sim --bin sim -- --seeds 1..1000 [--steps N] [--no-faults] [--not-durable]
//! ```
//!
//! Prints the runs, the faults injected by kind, the invariant checks made by kind, and every
//! failing seed with the first invariant it broke and the command that replays it. Exits with
//! status 1 when a seed failed.

use std::collections::BTreeMap;
use std::process::ExitCode;

use moldau_broker_sim::sim::{run, Options};

fn parse_range(s: &str) -> Option<(u64, u64)> {
    if let Some((a, b)) = s.split_once("..=") {
        return Some((a.parse().ok()?, b.parse::<u64>().ok()?.checked_add(1)?));
    }
    if let Some((a, b)) = s.split_once("..") {
        return Some((a.parse().ok()?, b.parse().ok()?));
    }
    let one: u64 = s.parse().ok()?;
    Some((one, one + 1))
}

fn main() -> ExitCode {
    let mut seeds = (1u64, 101u64);
    let mut options = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seeds" => match args.next().as_deref().and_then(parse_range) {
                Some(r) if r.0 < r.1 => seeds = r,
                _ => {
                    eprintln!("--seeds takes a range such as 1..1000 (end excluded), 1..=1000 or one seed");
                    return ExitCode::from(2);
                }
            },
            "--steps" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) => options.steps = n,
                None => {
                    eprintln!("--steps takes a number");
                    return ExitCode::from(2);
                }
            },
            "--no-faults" => options.faults = false,
            "--not-durable" => options.durable = false,
            other => {
                eprintln!(
                    "unknown argument '{other}'; usage: sim --seeds A..B [--steps N] [--no-faults] [--not-durable]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let (mut faults, mut checks, mut work) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    let mut failed = Vec::new();
    let mut steps = 0u64;
    for seed in seeds.0..seeds.1 {
        let r = run(seed, &options);
        steps += r.steps;
        for (k, v) in r.faults {
            *faults.entry(k).or_insert(0u64) += v;
        }
        for (k, v) in r.checks {
            *checks.entry(k).or_insert(0u64) += v;
        }
        for (k, v) in r.work {
            *work.entry(k).or_insert(0u64) += v;
        }
        if let Some(v) = r.violation {
            println!("seed {seed} FAILED at step {}: {v}", r.steps);
            failed.push(seed);
        }
    }
    let runs = seeds.1 - seeds.0;
    println!("{runs} runs (seeds {}..{}), {steps} steps, {} failed", seeds.0, seeds.1, failed.len());
    println!("faults injected:");
    for (k, v) in &faults {
        println!("  {k:<28} {v}");
    }
    println!("invariant checks made:");
    for (k, v) in &checks {
        println!("  {k:<52} {v}");
    }
    println!("work done:");
    for (k, v) in &work {
        println!("  {k:<28} {v}");
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        let extra = match (options.faults, options.durable) {
            (true, true) => String::new(),
            (f, d) => format!("{}{}", if f { "" } else { " --no-faults" }, if d { "" } else { " --not-durable" }),
        };
        for seed in &failed {
            println!(
                "replay: cargo run -p moldau-broker-sim --bin sim -- --seeds {seed} --steps {}{extra}",
                options.steps
            );
        }
        ExitCode::FAILURE
    }
}
