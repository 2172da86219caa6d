//! `txn-copier <bootstrap> <input> <output> <group> <transactional id> <abort ratio> <seed>`:
//! the exactly-once copier as a child process, for the SIGKILL test. Prints `in-txn` while a
//! transaction is open and `done <committed> <aborted>` when its input has been idle.

use std::time::Duration;

use moldau_tests::copier::{run_copier, CopierConfig};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bootstrap, input, output, group, txn_id, abort_ratio, seed] = args.as_slice() else {
        anyhow::bail!("usage: txn-copier <bootstrap> <input> <output> <group> <transactional id> <abort ratio> <seed>");
    };
    let cfg = CopierConfig {
        bootstrap: bootstrap.clone(),
        input: input.clone(),
        output: output.clone(),
        group: group.clone(),
        transactional_id: txn_id.clone(),
        abort_ratio: abort_ratio.parse()?,
        batch: 50,
        seed: seed.parse()?,
        idle_exit: Duration::from_secs(3),
        pause_in_txn: Duration::from_millis(100),
    };
    let stats = run_copier(&cfg)?;
    println!("done {} {}", stats.committed, stats.aborted);
    Ok(())
}
