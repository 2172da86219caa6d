//! RocksDB stores SIGKILLed at random points reopen at their last commit: each store's state is
//! exactly what the transactions before its checkpoint wrote, never a part of one, and its
//! checkpoint says where to restore its changelog from.
//!
//! The child is this same test binary running `child_writer` (selected by an environment
//! variable); it commits numbered transactions to a key-value and a window store (whose
//! retention keeps dropping segments) until it is killed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use moldau_state_store::{
    BincodeSerde, InMemoryStore, KeyValueStore, MemoryBudget, RawStore, RocksStore, StateStore, StoreOptions,
    StringSerde, WindowSpec, WindowStore,
};

const CHILD_ENV: &str = "MOLDAU_STATE_CRASH_DIR";
const KEYS: u64 = 40;

type Kv = KeyValueStore<String, u64>;
type Ws = WindowStore<String, u64>;

fn kv(raw: Box<dyn RawStore>) -> Kv {
    KeyValueStore::new(raw, Box::new(StringSerde), Box::new(BincodeSerde::default()), StoreOptions::default())
}

fn ws(raw: Box<dyn RawStore>) -> Ws {
    let spec = WindowSpec::new(10, 200).with_segment_interval(50);
    WindowStore::new(raw, Box::new(StringSerde), Box::new(BincodeSerde::default()), spec, StoreOptions::default())
        .unwrap()
}

fn rocks(dir: &Path, name: &str) -> Box<dyn RawStore> {
    let budget = MemoryBudget::new(16 << 20, 0.25);
    Box::new(RocksStore::open(&dir.join(name), name, &budget).expect("the store reopens"))
}

/// Transaction `n` writes keys `n % KEYS`, `(n * 7) % KEYS`, `(n * 13) % KEYS` = n, deletes
/// `(n * 3) % KEYS` when `n % 5 == 0`, and sets `last` = n; in the window store it puts n in
/// window `n` of key `n % 3` (time advances one ms per transaction).
fn apply(kv: &mut Kv, ws: &mut Ws, n: u64) {
    for k in [n % KEYS, (n * 7) % KEYS, (n * 13) % KEYS] {
        kv.put(&format!("k{k}"), &n, n as i64).unwrap();
    }
    if n.is_multiple_of(5) {
        kv.delete(&format!("k{}", (n * 3) % KEYS), n as i64).unwrap();
    }
    kv.put(&"last".to_string(), &n, n as i64).unwrap();
    ws.put(&format!("w{}", n % 3), &n, n as i64, n as i64).unwrap();
}

fn commit(st: &mut dyn StateStore, n: u64) {
    st.drain_changelog();
    st.commit(n as i64 + 1, &[("in".to_string(), 0, n as i64 + 1)]).unwrap();
}

#[test]
fn child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let dir = Path::new(&dir);
    let (mut k, mut w) = (kv(rocks(dir, "kv")), ws(rocks(dir, "win")));
    let mut n = k.checkpoint().changelog_offset as u64;
    assert_eq!(w.checkpoint().changelog_offset as u64, n, "the window store commits right after the kv store");
    loop {
        apply(&mut k, &mut w, n);
        commit(&mut k, n);
        commit(&mut w, n);
        n += 1;
    }
}

#[test]
fn should_reopen_at_the_last_commit_after_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut last_seen = 0;
    for round in 0..8 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("child starts");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(300 + seed % 700));
        child.kill().expect("SIGKILL");
        child.wait().unwrap();

        let (k, mut w) = (kv(rocks(dir.path(), "kv")), ws(rocks(dir.path(), "win")));
        let (ck, cw) = (k.checkpoint().changelog_offset as u64, w.checkpoint().changelog_offset as u64);
        assert!(ck >= last_seen, "round {round}: the checkpoint never goes back ({ck} < {last_seen})");
        assert!(cw == ck || cw + 1 == ck, "round {round}: the window store is at most one commit behind");
        let (mut ek, _) = expected(ck);
        assert_eq!(k.all().unwrap(), ek.all().unwrap(), "round {round}: kv state at checkpoint {ck}");
        let committed_input = k.checkpoint().input_offsets.get("in").and_then(|p| p.get(&0)).copied();
        assert_eq!(committed_input, (ck > 0).then_some(ck as i64));
        let (_, mut ew) = expected(cw);
        assert_eq!(w.all().unwrap(), ew.all().unwrap(), "round {round}: window state at checkpoint {cw}");
        assert_eq!(w.stream_time(), ew.stream_time());
        ek.abort();
        ew.abort();
        w.abort();
        // The next child catches the window store up by itself: commit it to the kv checkpoint.
        if cw < ck {
            let mut k2 = kv(Box::new(InMemoryStore::new("scratch")));
            apply(&mut k2, &mut w, cw);
            commit(&mut w, cw);
        }
        last_seen = ck;
    }
    assert!(last_seen > 0, "the child committed something");
}

/// The states after transactions `0..c`, built in memory.
fn expected(c: u64) -> (Kv, Ws) {
    let mut k = kv(Box::new(InMemoryStore::new("expected-kv")));
    let mut w = ws(Box::new(InMemoryStore::new("expected-win")));
    for n in 0..c {
        apply(&mut k, &mut w, n);
        if n % 50 == 0 {
            commit(&mut k, n);
            commit(&mut w, n);
        }
    }
    commit(&mut k, c.saturating_sub(1));
    commit(&mut w, c.saturating_sub(1));
    (k, w)
}
