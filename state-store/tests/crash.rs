//! A RocksDB store SIGKILLed at random points reopens at its last commit: its state is exactly
//! what the transactions before its checkpoint wrote, never a part of one.
//!
//! The child is this same test binary running `child_writer` (selected by an environment
//! variable); it commits numbered transactions until it is killed.

use std::process::{Command, Stdio};
use std::time::Duration;

use moldau_state_store::{BincodeSerde, KeyValueStore, MemoryBudget, RocksStore, StringSerde};

const CHILD_ENV: &str = "MOLDAU_STATE_CRASH_DIR";
const KEYS: u64 = 40;

type Store = KeyValueStore<String, u64>;

fn open(path: &std::path::Path) -> Store {
    let raw = RocksStore::open(path, "crash", &MemoryBudget::new(16 << 20, 0.25)).expect("the store reopens");
    KeyValueStore::new(Box::new(raw), Box::new(StringSerde), Box::new(BincodeSerde::<u64>::default()))
}

/// Transaction `n` writes keys `n % KEYS`, `(n * 7) % KEYS`, `(n * 13) % KEYS` = n, deletes
/// `(n * 3) % KEYS` when `n % 5 == 0`, and sets `last` = n.
fn apply(st: &mut Store, n: u64) {
    for k in [n % KEYS, (n * 7) % KEYS, (n * 13) % KEYS] {
        st.put(&format!("k{k}"), &n, n as i64).unwrap();
    }
    if n % 5 == 0 {
        st.delete(&format!("k{}", (n * 3) % KEYS), n as i64).unwrap();
    }
    st.put(&"last".to_string(), &n, n as i64).unwrap();
}

#[test]
fn child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let mut st = open(std::path::Path::new(&dir));
    let mut n = st.checkpoint().changelog_offset as u64;
    println!("ready");
    loop {
        apply(&mut st, n);
        st.drain_changelog();
        st.commit(n as i64 + 1, &[("in".to_string(), 0, n as i64 + 1)]).unwrap();
        n += 1;
    }
}

#[test]
fn should_reopen_at_the_last_commit_after_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut last_seen = 0;
    for round in 0..8 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::null())
            .spawn()
            .expect("child starts");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(300 + seed % 700));
        child.kill().expect("SIGKILL");
        child.wait().unwrap();

        // The reopened store is exactly transactions 0..c of its checkpoint c.
        let st = open(&path);
        let c = st.checkpoint().changelog_offset as u64;
        assert!(c >= last_seen, "round {round}: the checkpoint never goes back ({c} < {last_seen})");
        let mut expected = open_expected(c);
        let got = st.all().unwrap();
        assert_eq!(got, expected.all().unwrap(), "round {round}: state at checkpoint {c}");
        assert_eq!(st.checkpoint().input_offsets.get("in").and_then(|p| p.get(&0)).copied(), (c > 0).then_some(c as i64));
        expected.abort();
        last_seen = c;
    }
    assert!(last_seen > 0, "the child committed something");
}

/// The state after transactions `0..c`, built in memory.
fn open_expected(c: u64) -> Store {
    let mut st = KeyValueStore::new(
        Box::new(moldau_state_store::InMemoryStore::new("expected")),
        Box::new(StringSerde),
        Box::new(BincodeSerde::<u64>::default()),
    );
    for n in 0..c {
        apply(&mut st, n);
    }
    st.commit(c as i64, &[]).unwrap();
    st
}
