//! `eos-app <bootstrap> <at_least_once|exactly_once_v2> <state dir> [threads=N]
//! [repartition=true|false] [commit-ms=N]`: the crash-test
//! application as a child process that gets SIGKILLed. Prints `started` once running, then its
//! metrics every 100 ms.

use moldau_engine::ProcessingGuarantee;

fn main() -> anyhow::Result<()> {
    moldau_tests::init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bootstrap, guarantee, dir, options @ ..] = args.as_slice() else {
        anyhow::bail!(
            "usage: eos-app <bootstrap> <at_least_once|exactly_once_v2> <state dir> [threads=N] \
             [repartition=true|false] [commit-ms=N]"
        );
    };
    let options = moldau_tests::eos_app::RunOptions::parse(options)?;
    moldau_tests::eos_app::run(bootstrap, ProcessingGuarantee::parse(guarantee)?, dir.as_ref(), &options)
}
