//! Crash test: a consumer process is killed with SIGKILL at random points while it consumes from
//! the SQLite log, and started again, several times. A ledger written in inbox mode proves that
//! every event was handled, none was lost, and none had its effect twice.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use event_runtime::{App, DomainEvent, Envelope};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqlitePool;

/// The same wire type the consumer binary reads.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "ledger", name = "ledger.entry")]
struct Entry {
    #[event(key)]
    account: String,
    seq: u32,
}

const EVENTS: u32 = 300;
const ACCOUNTS: u32 = 12;
const KILLS: usize = 5;

fn spawn(db: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_crash_consumer"))
        .arg(db)
        .arg(EVENTS.to_string())
        .arg("4")
        .spawn()
        .expect("consumer binary starts")
}

async fn handled(pool: &SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM ledger")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

/// A pseudo-random number in `0..bound` (SplitMix64 over a seed from the clock).
fn random(state: &mut u64, bound: u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % bound
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_nothing_and_doubles_nothing() {
    let dir = std::env::temp_dir().join(format!(
        "evt-crash-{}-{}",
        std::process::id(),
        uuid::Uuid::now_v7()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("log.db");

    // Produce every event first, and create the ledger table the handler writes to.
    let app = App::embedded(&db).await.unwrap();
    let publisher = app.publisher();
    let events: Vec<Envelope<Entry>> = (0..EVENTS)
        .map(|seq| {
            Envelope::event(Entry {
                account: format!("acct-{}", seq % ACCOUNTS),
                seq,
            })
        })
        .collect();
    for chunk in events.chunks(50) {
        publisher.publish_all(chunk.to_vec()).await.unwrap();
    }
    let pool = event_runtime::transport::sqlite::SqliteTransport::open(&db)
        .await
        .unwrap()
        .pool()
        .clone();
    sqlx::query("CREATE TABLE ledger (row INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, account TEXT NOT NULL, seq INTEGER NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    drop(app);

    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut kills_mid_stream = 0;
    for round in 0..KILLS {
        let before = handled(&pool).await;
        let mut child = spawn(&db);
        // Wait until this process has made progress, then kill it at a random point after that.
        let deadline = Instant::now() + Duration::from_secs(30);
        while handled(&pool).await == before && Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("consumer exited early in round {round}: {status}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(random(&mut seed, 150))).await;
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        let after = handled(&pool).await;
        if after > before && after < i64::from(EVENTS) {
            kills_mid_stream += 1;
        }
        eprintln!("round {round}: killed with {after} of {EVENTS} handled");
    }
    assert!(
        kills_mid_stream >= 3,
        "only {kills_mid_stream} kills landed mid-stream"
    );

    // A last run to completion.
    let mut child = spawn(&db);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the consumer did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success());

    // Every event exactly once...
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT event_id, account, seq FROM ledger ORDER BY row")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut ids: Vec<&str> = rows.iter().map(|(id, _, _)| id.as_str()).collect();
    ids.sort_unstable();
    let before_dedup = ids.len();
    ids.dedup();
    assert_eq!(before_dedup, ids.len(), "an event had its effect twice");
    let mut expected: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
    expected.sort_unstable();
    assert_eq!(
        ids,
        expected.iter().map(String::as_str).collect::<Vec<_>>(),
        "events were lost"
    );
    // ...and in order per account.
    for account in 0..ACCOUNTS {
        let seqs: Vec<i64> = rows
            .iter()
            .filter(|(_, a, _)| *a == format!("acct-{account}"))
            .map(|(_, _, seq)| *seq)
            .collect();
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(seqs, sorted, "order broken for acct-{account}");
    }
}
