//! `sql-server <bootstrap> <state dir> <service id>`: a Moldau SQL server (the server
//! `moldau server` runs) as a child process that gets SIGKILLed. Prints `listening <addr>` once
//! it has replayed its command topic and serves.

fn main() -> anyhow::Result<()> {
    moldau_tests::init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bootstrap, dir, service] = args.as_slice() else {
        anyhow::bail!("usage: sql-server <bootstrap> <state dir> <service id>");
    };
    let mut config = moldau_sql::ExecutorConfig::new(bootstrap, service, dir);
    config.properties.insert("commit.interval.ms".into(), "100".into());
    // A killed server's tasks move once the group notices it is gone (librdkafka's default
    // waits 45 s).
    config.properties.insert("consumer.session.timeout.ms".into(), "6000".into());
    let server = moldau_sql::server::Server::start(moldau_sql::server::ServerConfig {
        executor: config,
        listen: "127.0.0.1:0".parse()?,
    })?;
    println!("listening {}", server.addr());
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
