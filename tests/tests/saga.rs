//! Sagas on real engines: a checkout (reserve stock -> charge -> ship, with a release on a
//! declined or silent payment and a payment timeout) runs to completion or failure on the
//! embedded SQLite engine, and with PostgreSQL stores on NATS and on Kafka (tansu). The
//! participants are ordinary handlers; the saga's state, effects and timers commit in its inbox
//! transactions.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_runtime::dlq::LetterFilter;
use event_runtime::saga::{Messages, On, Saga, Status, Step, Transition, Unknown};
use event_runtime::transport::Transport;
use event_runtime::{App, Command, Context, DomainEvent, Envelope, HandlerError, Running};
use serde::{Deserialize, Serialize};

mod common;

#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug)]
#[event(context = "orders")]
struct OrderPlaced {
    #[event(key)]
    order: String,
    cents: u64,
}

#[derive(Command, Serialize, Deserialize, Clone, Debug)]
#[command(context = "inventory")]
struct ReserveStock {
    #[command(key)]
    order: String,
}

#[derive(Command, Serialize, Deserialize, Clone, Debug)]
#[command(context = "inventory")]
struct ReleaseStock {
    #[command(key)]
    order: String,
}

#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug)]
#[event(context = "inventory")]
struct StockReserved {
    #[event(key)]
    order: String,
}

#[derive(Command, Serialize, Deserialize, Clone, Debug)]
#[command(context = "payments")]
struct Charge {
    #[command(key)]
    order: String,
    cents: u64,
}

#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug)]
#[event(context = "payments")]
struct PaymentCaptured {
    #[event(key)]
    order: String,
}

#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug)]
#[event(context = "payments")]
struct PaymentDeclined {
    #[event(key)]
    order: String,
    why: String,
}

#[derive(Command, Serialize, Deserialize, Clone, Debug)]
#[command(context = "shipping")]
struct Ship {
    #[command(key)]
    order: String,
}

/// How long the checkout waits for the payment.
const PAYMENT_TIMEOUT: Duration = Duration::from_millis(800);

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Checkout {
    Reserving { cents: u64 },
    Charging,
    Shipped,
    Released { why: String },
}

impl Saga for Checkout {
    const NAME: &'static str = "checkout";

    fn messages(on: &mut Messages<Self>) {
        on.on::<OrderPlaced>()
            .on::<StockReserved>()
            .on::<PaymentCaptured>()
            .on::<PaymentDeclined>();
    }

    fn timeout(self, timer: &str, step: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        assert_eq!(timer, "payment");
        release(step, "payment timed out")
    }
}

fn release(step: &mut Step<'_>, why: &str) -> Result<Transition<Checkout>, HandlerError> {
    step.send(ReleaseStock {
        order: step.key().to_owned(),
    })?;
    Ok(Transition::fail(
        Checkout::Released {
            why: why.to_owned(),
        },
        why,
    ))
}

impl On<OrderPlaced> for Checkout {
    const UNKNOWN: Unknown = Unknown::Start;

    fn key(event: &OrderPlaced) -> String {
        event.order.clone()
    }

    fn start(event: &OrderPlaced, step: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        step.send(ReserveStock {
            order: event.order.clone(),
        })?;
        Ok(Transition::next(Checkout::Reserving { cents: event.cents }))
    }

    fn handle(self, _: &OrderPlaced, _: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        Ok(Transition::next(self))
    }
}

impl On<StockReserved> for Checkout {
    fn key(event: &StockReserved) -> String {
        event.order.clone()
    }

    fn handle(
        self,
        event: &StockReserved,
        step: &mut Step<'_>,
    ) -> Result<Transition<Self>, HandlerError> {
        let Checkout::Reserving { cents } = self else {
            return Ok(Transition::next(self));
        };
        step.send(Charge {
            order: event.order.clone(),
            cents,
        })?;
        step.schedule("payment", PAYMENT_TIMEOUT);
        Ok(Transition::next(Checkout::Charging))
    }
}

impl On<PaymentCaptured> for Checkout {
    fn key(event: &PaymentCaptured) -> String {
        event.order.clone()
    }

    fn handle(
        self,
        event: &PaymentCaptured,
        step: &mut Step<'_>,
    ) -> Result<Transition<Self>, HandlerError> {
        step.cancel("payment");
        step.send(Ship {
            order: event.order.clone(),
        })?;
        Ok(Transition::complete(Checkout::Shipped))
    }
}

impl On<PaymentDeclined> for Checkout {
    fn key(event: &PaymentDeclined) -> String {
        event.order.clone()
    }

    fn handle(
        self,
        event: &PaymentDeclined,
        step: &mut Step<'_>,
    ) -> Result<Transition<Self>, HandlerError> {
        step.cancel("payment");
        release(step, &format!("declined: {}", event.why))
    }
}

/// What the participants did, in order: `reserve o-1`, `charge o-1`, ...
#[derive(Clone, Default)]
struct Ledger(Arc<Mutex<Vec<String>>>);

impl Ledger {
    fn push(&self, entry: String) {
        self.0.lock().unwrap().push(entry);
    }

    fn of(&self, order: &str) -> Vec<String> {
        let suffix = format!(" {order}");
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.ends_with(&suffix))
            .map(|e| e.strip_suffix(&suffix).unwrap().to_owned())
            .collect()
    }
}

/// The participants: inventory reserves and releases, payments captures (declines 13 cents,
/// never answers for 0), shipping ships. Each records what it did, once per command (they are
/// idempotent by the command's id, as a participant keeping a ledger is).
fn participants<T: Transport>(app: &mut App<T>, ledger: &Ledger) {
    let seen = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    let record = move |ledger: &Ledger, id: String, entry: String| {
        if seen.lock().unwrap().insert(id) {
            ledger.push(entry);
        }
    };
    let (l, r) = (ledger.clone(), record.clone());
    app.subscribe(
        "inventory",
        move |cmd: Envelope<ReserveStock>, ctx: Context| {
            r(
                &l,
                cmd.id.to_string(),
                format!("reserve {}", cmd.data.order),
            );
            async move {
                ctx.publish(StockReserved {
                    order: cmd.data.order,
                })?;
                Ok::<(), HandlerError>(())
            }
        },
    );
    let (l, r) = (ledger.clone(), record.clone());
    app.subscribe(
        "inventory",
        move |cmd: Envelope<ReleaseStock>, _ctx: Context| {
            r(
                &l,
                cmd.id.to_string(),
                format!("release {}", cmd.data.order),
            );
            async { Ok::<(), HandlerError>(()) }
        },
    );
    let (l, r) = (ledger.clone(), record.clone());
    app.subscribe("payments", move |cmd: Envelope<Charge>, ctx: Context| {
        r(&l, cmd.id.to_string(), format!("charge {}", cmd.data.order));
        async move {
            match cmd.data.cents {
                0 => {}
                13 => ctx.publish(PaymentDeclined {
                    order: cmd.data.order,
                    why: "unlucky amount".into(),
                })?,
                _ => ctx.publish(PaymentCaptured {
                    order: cmd.data.order,
                })?,
            }
            Ok::<(), HandlerError>(())
        }
    });
    let (l, r) = (ledger.clone(), record);
    app.subscribe("shipping", move |cmd: Envelope<Ship>, _ctx: Context| {
        r(&l, cmd.id.to_string(), format!("ship {}", cmd.data.order));
        async { Ok::<(), HandlerError>(()) }
    });
}

/// Waits until the instance `order` has finished.
async fn finished<T: Transport>(
    running: &Running<T>,
    order: &str,
) -> event_runtime::saga::InstanceRecord {
    let sagas = running.sagas().expect("SQL stores");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let instance = sagas.instance("checkout", order).await.unwrap();
        if let Some(instance) = instance.filter(|i| i.status.is_finished()) {
            return instance;
        }
        assert!(Instant::now() < deadline, "checkout {order} never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn checkout<T: Transport>(mut app: App<T>, prefix: &str) {
    let ledger = Ledger::default();
    app.saga::<Checkout>();
    participants(&mut app, &ledger);
    let running = app.start().await.unwrap();
    let publisher = running.publisher();
    let (ok, declined, silent) = (
        format!("{prefix}-ok"),
        format!("{prefix}-declined"),
        format!("{prefix}-silent"),
    );
    for (order, cents) in [(&ok, 500), (&declined, 13), (&silent, 0)] {
        publisher
            .publish(Envelope::event(OrderPlaced {
                order: order.clone(),
                cents,
            }))
            .await
            .unwrap();
    }

    let done = finished(&running, &ok).await;
    assert_eq!(done.status, Status::Completed, "{done:?}");
    assert_eq!(done.state, serde_json::json!("Shipped"));
    assert_eq!(done.version, 3);
    assert!(done.timers.is_empty(), "{done:?}");

    let failed = finished(&running, &declined).await;
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(failed.reason.as_deref(), Some("declined: unlucky amount"));
    assert!(failed.timers.is_empty(), "{failed:?}");

    let started = Instant::now();
    let timed_out = finished(&running, &silent).await;
    assert_eq!(timed_out.status, Status::Failed);
    assert_eq!(timed_out.reason.as_deref(), Some("payment timed out"));
    assert!(started.elapsed() < Duration::from_secs(10));

    let sagas = running.sagas().unwrap();
    let history: Vec<String> = sagas
        .history("checkout", &silent)
        .await
        .unwrap()
        .into_iter()
        .map(|h| format!("{} {}", h.version, h.message_type))
        .collect();
    assert_eq!(
        history,
        [
            "1 orders.order_placed",
            "2 inventory.stock_reserved",
            "3 timer:payment"
        ],
        "{history:?}"
    );

    // A late payment for the timed-out order finds a finished instance: dead-lettered with the
    // reason (the default policy), not applied.
    publisher
        .publish(Envelope::event(PaymentCaptured {
            order: silent.clone(),
        }))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let letter = loop {
        let letters = running
            .dead_letters()
            .list(&LetterFilter {
                group: Some("saga.checkout".into()),
                ..LetterFilter::default()
            })
            .await
            .unwrap();
        if let Some(letter) = letters.into_iter().next() {
            break letter;
        }
        assert!(
            Instant::now() < deadline,
            "the late payment was not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        letter.reason.contains(&format!("key `{silent}` is failed")),
        "{}",
        letter.reason
    );

    // The cancelled payment timer of the completed order never fires: wait past it.
    tokio::time::sleep(PAYMENT_TIMEOUT + Duration::from_millis(400)).await;
    assert!(running.wait_idle(Duration::from_secs(20)).await);
    let still = sagas.instance("checkout", &ok).await.unwrap().unwrap();
    assert_eq!(still.version, 3, "{still:?}");
    assert_eq!(sagas.history("checkout", &silent).await.unwrap().len(), 3);

    assert_eq!(ledger.of(&ok), ["reserve", "charge", "ship"]);
    assert_eq!(ledger.of(&declined), ["reserve", "charge", "release"]);
    assert_eq!(ledger.of(&silent), ["reserve", "charge", "release"]);
    let running_now = sagas
        .list(Some("checkout"), Some(Status::Running), 10)
        .await
        .unwrap();
    assert!(running_now.is_empty(), "{running_now:?}");

    let metrics = running.metrics();
    let snapshot = metrics.refresh().await.unwrap();
    let checkout = snapshot
        .sagas
        .iter()
        .find(|m| m.saga == "checkout")
        .expect("the wired saga has metrics");
    assert_eq!(
        (checkout.running, checkout.completed, checkout.failed),
        (0, 1, 2),
        "{checkout:?}"
    );
    assert_eq!(checkout.timers_pending, 0);
    assert_eq!(checkout.timer_lateness_seconds, 0.0);
    let body = metrics.encode().await.unwrap();
    assert!(
        body.contains("evt_saga_instances{saga=\"checkout\",status=\"failed\"} 2"),
        "{body}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_on_the_embedded_engine() {
    let dir = common::tempdir("saga");
    let app = App::embedded(dir.join("shop.db")).await.unwrap();
    checkout(app, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_on_nats_with_postgres_stores() {
    let Some(app) = common::nats_with_postgres().await else {
        return;
    };
    checkout(app, "nats").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_on_kafka_with_postgres_stores() {
    let Some(app) = common::kafka_with_postgres().await else {
        return;
    };
    checkout(app, "kafka").await;
}

/// Sagas need transactions: an app with in-memory stores refuses to start, saying why.
#[tokio::test]
async fn a_saga_on_in_memory_stores_is_refused_at_start() {
    let mut app = App::in_memory().await.unwrap();
    app.saga::<Checkout>();
    let err = app.start().await.err().expect("refused");
    let text = err.to_string();
    assert!(text.contains("saga `checkout` needs SQL stores"), "{text}");
}

/// The test kit runs the same decisions without a broker: timers fire on the virtual clock
/// only while current, the policies apply, and a finished instance takes no more messages.
#[test]
fn the_test_kit_runs_the_checkout_on_a_virtual_clock() {
    use event_runtime::saga::SagaTest;
    let mut test = SagaTest::<Checkout>::new();
    test.when(OrderPlaced {
        order: "o-1".into(),
        cents: 500,
    })
    .unwrap();
    assert_eq!(test.state("o-1"), Some(Checkout::Reserving { cents: 500 }));
    assert_eq!(test.sent::<ReserveStock>().len(), 1);
    test.when(StockReserved {
        order: "o-1".into(),
    })
    .unwrap();
    let timers = test.timers("o-1");
    assert_eq!(
        timers,
        [("payment".to_owned(), test.now() + PAYMENT_TIMEOUT)]
    );
    assert_eq!(test.sent::<Charge>()[0].cents, 500);

    // Not yet due.
    test.advance(PAYMENT_TIMEOUT / 2).unwrap();
    assert_eq!(test.status("o-1"), Some(Status::Running));
    // Declined: the timer is cancelled with the transition, and never fires.
    test.when(PaymentDeclined {
        order: "o-1".into(),
        why: "no funds".into(),
    })
    .unwrap();
    assert!(test.timers("o-1").is_empty());
    test.advance(PAYMENT_TIMEOUT * 4).unwrap();
    assert_eq!(test.status("o-1"), Some(Status::Failed));
    assert_eq!(
        test.state("o-1"),
        Some(Checkout::Released {
            why: "declined: no funds".into()
        })
    );
    assert_eq!(test.sent::<ReleaseStock>().len(), 1, "released once");
    assert_eq!(test.version("o-1"), Some(3));

    // A second start for the finished instance is discarded; a payment for it is refused
    // (dead-lettered by the runtime), as is one for an order no saga knows.
    test.when(OrderPlaced {
        order: "o-1".into(),
        cents: 500,
    })
    .unwrap();
    assert_eq!(test.discarded(), 1);
    let late = test
        .when(PaymentCaptured {
            order: "o-1".into(),
        })
        .unwrap_err();
    assert!(late.to_string().contains("key `o-1` is failed"), "{late}");
    let unknown = test
        .when(PaymentCaptured {
            order: "o-2".into(),
        })
        .unwrap_err();
    assert!(
        unknown
            .to_string()
            .contains("no instance of saga `checkout` has key `o-2`"),
        "{unknown}"
    );
    assert_eq!(
        test.version("o-1"),
        Some(3),
        "refused messages change nothing"
    );

    // Silent payment: the timer fires at its due time and compensates.
    test.clear_effects();
    test.when(OrderPlaced {
        order: "o-3".into(),
        cents: 0,
    })
    .unwrap();
    test.when(StockReserved {
        order: "o-3".into(),
    })
    .unwrap();
    test.advance(PAYMENT_TIMEOUT).unwrap();
    assert_eq!(test.status("o-3"), Some(Status::Failed));
    assert_eq!(test.sent::<ReleaseStock>().len(), 1);
    assert_eq!(test.effects(), 3, "reserve, charge, release");
}

/// Completes as soon as it starts.
#[derive(Serialize, Deserialize, Debug)]
struct Instant_;

impl Saga for Instant_ {
    const NAME: &'static str = "instant";

    fn messages(on: &mut Messages<Self>) {
        on.on::<OrderPlaced>();
    }
}

impl On<OrderPlaced> for Instant_ {
    const UNKNOWN: Unknown = Unknown::Start;

    fn key(event: &OrderPlaced) -> String {
        event.order.clone()
    }

    fn start(_: &OrderPlaced, _: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        Ok(Transition::complete(Instant_))
    }

    fn handle(self, _: &OrderPlaced, _: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        Ok(Transition::complete(self))
    }
}

/// A key used again after its instance finished and was deleted starts a new instance whose
/// timers are its own: its payment timeout has the same name and token as the old instance's
/// (versions start again at 1), whose dedupe mark is still kept, and still fires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_used_again_gets_its_own_timeouts() {
    let dir = common::tempdir("saga-reuse");
    let mut app = App::embedded(dir.join("shop.db")).await.unwrap();
    let ledger = Ledger::default();
    app.retention(event_runtime::app::Retention {
        finished_sagas: Some(Duration::ZERO),
        every: Duration::from_millis(25),
        ..event_runtime::app::Retention::default()
    })
    .saga::<Checkout>();
    participants(&mut app, &ledger);
    let running = app.start().await.unwrap();
    for lifetime in 1..=2 {
        // Nobody answers a payment of 0 cents: the checkout times out, fails and is deleted.
        running
            .publisher()
            .publish(Envelope::event(OrderPlaced {
                order: "again".into(),
                cents: 0,
            }))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while running.retention_stats().finished_sagas < lifetime {
            assert!(
                Instant::now() < deadline,
                "lifetime {lifetime} of the key never timed out"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    let dedupe = running.stats("saga.checkout").unwrap().duplicates;
    assert_eq!(dedupe, 0, "no timeout taken for a copy of the old one's");
    running.stop().await;
}

/// The retention task deletes finished instances (with their history) past
/// `Retention::finished_sagas`, and never a running one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_instances_are_deleted_after_their_retention_and_running_ones_kept() {
    let dir = common::tempdir("saga-retention");
    let mut app = App::embedded(dir.join("shop.db")).await.unwrap();
    app.retention(event_runtime::app::Retention {
        finished_sagas: Some(Duration::ZERO),
        every: Duration::from_millis(25),
        ..event_runtime::app::Retention::default()
    })
    // Checkout stays running (no participant answers); instant completes at once.
    .saga::<Checkout>()
    .saga::<Instant_>();
    let running = app.start().await.unwrap();
    for order in ["r-1", "r-2"] {
        running
            .publisher()
            .publish(Envelope::event(OrderPlaced {
                order: order.into(),
                cents: 1,
            }))
            .await
            .unwrap();
    }
    let sagas = running.sagas().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while running.retention_stats().finished_sagas < 2 {
        assert!(
            Instant::now() < deadline,
            "finished instances never deleted"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        sagas
            .list(Some("instant"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(sagas.history("instant", "r-1").await.unwrap().is_empty());
    let kept = sagas.list(Some("checkout"), None, 10).await.unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept.iter().all(|i| i.status == Status::Running));
    assert_eq!(sagas.history("checkout", "r-1").await.unwrap().len(), 1);
    running.stop().await;
}
