//! `#[saga]`: an orchestrated checkout declared as steps. The test kit runs it on a virtual
//! clock: the unwinds in reverse order, the timed-out step compensated too, the pivot sent again
//! and then stuck, an awaited compensation, answers delivered twice, and the structure check
//! derived from the declared steps (which fails for a saga whose compensation sends nothing),
//! the operator's repairs; then the same kind of saga on the embedded SQLite engine and with
//! PostgreSQL stores on NATS and on Kafka: completed, compensated, stuck on a participant that
//! does not answer, and resumed by a repair.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use event_runtime::saga::{
    Messages, Orchestrated, Repair, SagaTest, Status, Step, StepSpec, Steps,
};
use event_runtime::transport::Transport;
use event_runtime::{App, Command, Context, DomainEvent, Envelope, HandlerError, Running, saga};
use serde::{Deserialize, Serialize};

mod common;

#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug)]
#[event(context = "checkout")]
struct CheckoutRequested {
    #[event(key)]
    order: String,
    cents: u64,
}

#[derive(Command, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[command(context = "inventory")]
struct HoldStock {
    #[command(key)]
    order: String,
}

#[derive(Command, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[command(context = "inventory")]
struct ReleaseStock {
    #[command(key)]
    order: String,
}

#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(context = "inventory")]
struct StockHeld {
    #[event(key)]
    order: String,
}

#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(context = "inventory")]
struct StockReleased {
    #[event(key)]
    order: String,
}

#[derive(Command, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[command(context = "payments")]
struct ChargeCard {
    #[command(key)]
    order: String,
}

#[derive(Command, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[command(context = "payments")]
struct RefundCard {
    #[command(key)]
    order: String,
}

#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(context = "payments")]
struct CardCharged {
    #[event(key)]
    order: String,
}

#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(context = "payments")]
struct CardDeclined {
    #[event(key)]
    order: String,
}

#[derive(Command, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[command(context = "shipping")]
struct BookShipment {
    #[command(key)]
    order: String,
}

#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(context = "shipping")]
struct ShipmentBooked {
    #[event(key)]
    order: String,
}

#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(context = "shipping")]
struct ShipmentRefused {
    #[event(key)]
    order: String,
}

#[derive(Command, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[command(context = "mail")]
struct SendReceipt {
    #[command(key)]
    order: String,
}

#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(context = "mail")]
struct ReceiptSent {
    #[event(key)]
    order: String,
}

/// Hold (awaited release) -> charge (refund) -> ship (pivot) -> receipt (retriable).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Checkout {
    order: String,
    cents: u64,
    shipped: bool,
}

#[saga(key = order, attempts = 3)]
impl Checkout {
    #[start]
    fn requested(event: &CheckoutRequested) -> Self {
        Checkout {
            order: event.order.clone(),
            cents: event.cents,
            shipped: false,
        }
    }

    #[step(
        reply = StockHeld,
        fault = none,
        timeout = "5s",
        compensate = release,
        compensated = StockReleased
    )]
    fn hold(&self) -> HoldStock {
        HoldStock {
            order: self.order.clone(),
        }
    }

    fn release(&self) -> ReleaseStock {
        ReleaseStock {
            order: self.order.clone(),
        }
    }

    #[step(reply = CardCharged, fault = CardDeclined, timeout = "30s", compensate = refund)]
    fn charge(&self) -> ChargeCard {
        ChargeCard {
            order: self.order.clone(),
        }
    }

    fn refund(&self) -> RefundCard {
        RefundCard {
            order: self.order.clone(),
        }
    }

    #[step(
        pivot,
        reply = ShipmentBooked,
        on_reply = booked,
        fault = ShipmentRefused,
        on_fault = refused,
        timeout = "1m"
    )]
    fn ship(&self) -> BookShipment {
        BookShipment {
            order: self.order.clone(),
        }
    }

    fn booked(&mut self, _: &ShipmentBooked) {
        self.shipped = true;
    }

    fn refused(&self, _: &ShipmentRefused) -> String {
        format!("no carrier for {}", self.order)
    }

    #[step(reply = ReceiptSent, timeout = "10s")]
    fn receipt(&self) -> SendReceipt {
        SendReceipt {
            order: self.order.clone(),
        }
    }
}

type Kit = SagaTest<Orchestrated<Checkout>>;

fn order(key: &str) -> CheckoutRequested {
    CheckoutRequested {
        order: key.into(),
        cents: 500,
    }
}

fn held(key: &str) -> StockHeld {
    StockHeld { order: key.into() }
}

fn charged(key: &str) -> CardCharged {
    CardCharged { order: key.into() }
}

/// The compensations sent so far, in order.
fn sent(test: &Kit) -> Vec<&str> {
    test.effect_types()
        .into_iter()
        .filter_map(|ty| match ty {
            "payments.refund_card" => Some("refund"),
            "inventory.release_stock" => Some("release"),
            _ => None,
        })
        .collect()
}

#[test]
fn the_declared_steps_are_the_saga_the_runtime_runs() {
    let steps: Vec<(&str, event_runtime::saga::StepKind)> = <Checkout as Steps>::STEPS
        .iter()
        .map(|s: &StepSpec| (s.name, s.kind))
        .collect();
    use event_runtime::saga::StepKind::*;
    assert_eq!(
        steps,
        [
            ("hold", Compensatable),
            ("charge", Compensatable),
            ("ship", Pivot),
            ("receipt", Retriable)
        ]
    );
    let hold = &<Checkout as Steps>::STEPS[0];
    assert_eq!(hold.compensation, Some("release"));
    assert_eq!(hold.compensated, Some("StockReleased"));
    assert_eq!(hold.timeout, Duration::from_secs(5));
    assert_eq!(<Checkout as Steps>::ATTEMPTS, 3);
}

#[test]
fn every_step_answered_completes_and_records_what_the_replies_say() {
    let mut test = Kit::new();
    test.when(order("o-1")).unwrap();
    assert_eq!(
        test.sent::<HoldStock>(),
        [HoldStock {
            order: "o-1".into()
        }]
    );
    test.when(held("o-1")).unwrap();
    test.when(charged("o-1")).unwrap();
    test.when(ShipmentBooked {
        order: "o-1".into(),
    })
    .unwrap();
    assert!(test.state("o-1").unwrap().data.shipped, "on_reply ran");
    assert_eq!(test.status("o-1"), Some(Status::Running));
    test.when(ReceiptSent {
        order: "o-1".into(),
    })
    .unwrap();
    assert_eq!(test.status("o-1"), Some(Status::Completed));
    assert!(test.timers("o-1").is_empty());
    assert!(sent(&test).is_empty(), "nothing compensated");
}

#[test]
fn a_refused_pivot_refunds_then_releases_and_waits_for_the_release() {
    let mut test = Kit::new();
    test.when(order("o-2")).unwrap();
    test.when(held("o-2")).unwrap();
    test.when(charged("o-2")).unwrap();
    test.clear_effects();
    test.when(ShipmentRefused {
        order: "o-2".into(),
    })
    .unwrap();
    // The refund is not awaited; the release is.
    assert_eq!(sent(&test), ["refund", "release"]);
    assert_eq!(test.status("o-2"), Some(Status::Running));
    assert_eq!(test.state("o-2").unwrap().step, "hold");
    test.when(StockReleased {
        order: "o-2".into(),
    })
    .unwrap();
    assert_eq!(test.status("o-2"), Some(Status::Failed));
    assert!(test.timers("o-2").is_empty());
    // A late answer to the finished instance changes nothing.
    let effects = test.effects();
    test.when(ShipmentBooked {
        order: "o-2".into(),
    })
    .unwrap();
    assert_eq!(test.effects(), effects);
    assert_eq!(test.discarded(), 1);
}

#[test]
fn a_timed_out_charge_is_refunded_too_and_a_declined_one_is_not() {
    let mut silent = Kit::new();
    silent.when(order("o-3")).unwrap();
    silent.when(held("o-3")).unwrap();
    silent.clear_effects();
    silent.advance(Duration::from_secs(31)).unwrap();
    assert_eq!(sent(&silent), ["refund", "release"]);
    let state = silent.state("o-3").unwrap();
    assert_eq!(
        state.failure.as_deref(),
        Some("step `charge` timed out after 30s")
    );

    let mut declined = Kit::new();
    declined.when(order("o-4")).unwrap();
    declined.when(held("o-4")).unwrap();
    declined.clear_effects();
    declined
        .when(CardDeclined {
            order: "o-4".into(),
        })
        .unwrap();
    assert_eq!(sent(&declined), ["release"]);
}

#[test]
fn an_unanswered_release_is_sent_again_then_the_instance_is_stuck_until_the_answer() {
    let mut test = Kit::new();
    test.when(order("o-5")).unwrap();
    test.when(held("o-5")).unwrap();
    test.when(CardDeclined {
        order: "o-5".into(),
    })
    .unwrap();
    assert_eq!(test.sent::<ReleaseStock>().len(), 1);
    test.advance(Duration::from_secs(5)).unwrap();
    test.advance(Duration::from_secs(5)).unwrap();
    assert_eq!(test.sent::<ReleaseStock>().len(), 3, "attempts = 3");
    assert_eq!(test.status("o-5"), Some(Status::Running));
    test.advance(Duration::from_secs(5)).unwrap();
    assert_eq!(test.status("o-5"), Some(Status::Stuck));
    assert_eq!(
        test.sent::<ReleaseStock>().len(),
        3,
        "stuck sends nothing more"
    );
    test.advance(Duration::from_secs(600)).unwrap();
    assert_eq!(test.status("o-5"), Some(Status::Stuck));
    // A late duplicate neither un-sticks it nor moves its version (a queued repair stays valid).
    let version = test.version("o-5");
    test.when(CardDeclined {
        order: "o-5".into(),
    })
    .unwrap();
    test.when(order("o-5")).unwrap();
    assert_eq!(test.status("o-5"), Some(Status::Stuck));
    assert_eq!(test.version("o-5"), version);
    // The participant finally answers: the unwind goes on and ends.
    test.when(StockReleased {
        order: "o-5".into(),
    })
    .unwrap();
    assert_eq!(test.status("o-5"), Some(Status::Failed));
}

#[test]
fn an_unanswered_pivot_is_sent_again_and_never_compensated() {
    let mut test = Kit::new();
    test.when(order("o-6")).unwrap();
    test.when(held("o-6")).unwrap();
    test.when(charged("o-6")).unwrap();
    for _ in 0..3 {
        test.advance(Duration::from_secs(60)).unwrap();
    }
    assert_eq!(test.sent::<BookShipment>().len(), 3);
    assert_eq!(test.status("o-6"), Some(Status::Stuck));
    assert!(
        sent(&test).is_empty(),
        "past the pivot's send nothing is undone"
    );
}

#[test]
fn answers_delivered_twice_change_nothing() {
    let mut test = Kit::new();
    test.when(order("o-7")).unwrap();
    test.when(order("o-7")).unwrap();
    test.when(held("o-7")).unwrap();
    let (state, effects) = (test.state("o-7").unwrap(), test.effects());
    test.when(held("o-7")).unwrap();
    assert_eq!(test.state("o-7").unwrap().data, state.data);
    assert_eq!(test.state("o-7").unwrap().step, "charge");
    assert_eq!(test.effects(), effects);
    assert_eq!(test.sent::<HoldStock>().len(), 1);
    assert_eq!(test.sent::<ChargeCard>().len(), 1);
}

#[test]
fn the_structure_check_passes_for_the_declared_saga() {
    Kit::check_structure(&order("o-8")).unwrap();
}

/// The checkout's steps by hand, with a compensation that forgets to send anything: what the
/// structure check exists to catch.
#[derive(Serialize, Deserialize, Clone, Debug)]
struct Forgetful(Checkout);

impl Steps for Forgetful {
    const NAME: &'static str = "forgetful";
    const STEPS: &'static [StepSpec] = <Checkout as Steps>::STEPS;

    fn request(&self, name: &str, step: &mut Step<'_>) -> Result<(), HandlerError> {
        self.0.request(name, step)
    }

    fn compensate(&self, name: &str, step: &mut Step<'_>) -> Result<(), HandlerError> {
        if name == "charge" {
            return Ok(());
        }
        self.0.compensate(name, step)
    }

    fn messages(_: &mut Messages<Orchestrated<Self>>) {}
}

impl event_runtime::saga::Handles<CheckoutRequested> for Forgetful {
    const ROLE: event_runtime::saga::Role = event_runtime::saga::Role::Start;
    fn key(message: &CheckoutRequested) -> String {
        message.order.clone()
    }
    fn start(message: &CheckoutRequested) -> Result<Self, HandlerError> {
        Ok(Forgetful(Checkout::requested(message)))
    }
}

#[test]
fn the_structure_check_fails_when_a_compensation_sends_nothing() {
    let err = SagaTest::<Orchestrated<Forgetful>>::check_structure(&order("o-9")).unwrap_err();
    assert!(err.contains("saga `forgetful`"), "{err}");
    assert!(
        err.contains("step `charge`, compensation: its compensation `refund` sends nothing"),
        "{err}"
    );
}

#[test]
fn an_operator_resumes_a_stuck_release_or_skips_it() {
    let stuck = |key: &str| {
        let mut test = Kit::new();
        test.when(order(key)).unwrap();
        test.when(held(key)).unwrap();
        test.when(CardDeclined { order: key.into() }).unwrap();
        for _ in 0..3 {
            test.advance(Duration::from_secs(5)).unwrap();
        }
        assert_eq!(test.status(key), Some(Status::Stuck));
        test
    };
    // Resume: the release is sent again, with fresh attempts, and its answer ends the unwind.
    let mut test = stuck("o-10");
    test.repair("o-10", Repair::Resume).unwrap();
    assert_eq!(test.status("o-10"), Some(Status::Running));
    assert_eq!(test.sent::<ReleaseStock>().len(), 4);
    assert_eq!(test.timers("o-10").len(), 1, "the release's timer again");
    test.when(StockReleased {
        order: "o-10".into(),
    })
    .unwrap();
    assert_eq!(test.status("o-10"), Some(Status::Failed));
    // Skip: the release counts as done (an operator released the stock by hand).
    let mut test = stuck("o-11");
    test.repair("o-11", Repair::Skip).unwrap();
    assert_eq!(test.status("o-11"), Some(Status::Failed));
    assert_eq!(test.sent::<ReleaseStock>().len(), 3);
    // Nothing left to repair on a finished instance: the repair drops itself.
    let version = test.version("o-11");
    test.repair("o-11", Repair::Resume).unwrap();
    assert_eq!(test.version("o-11"), version);
}

#[test]
fn an_operator_compensates_before_the_pivot_and_not_after_it() {
    let mut test = Kit::new();
    test.when(order("o-12")).unwrap();
    test.when(held("o-12")).unwrap();
    test.clear_effects();
    // Waiting for the charge: undo it (it may have happened) and the hold.
    test.repair("o-12", Repair::Compensate).unwrap();
    assert_eq!(sent(&test), ["refund", "release"]);
    assert_eq!(
        test.state("o-12").unwrap().failure.as_deref(),
        Some("compensated by an operator")
    );
    // Compensating already: a second compensate is refused, naming why.
    let err = test.repair("o-12", Repair::Compensate).unwrap_err();
    assert!(err.to_string().contains("compensating already"), "{err}");

    let mut shipped = Kit::new();
    shipped.when(order("o-13")).unwrap();
    shipped.when(held("o-13")).unwrap();
    shipped.when(charged("o-13")).unwrap();
    shipped
        .when(ShipmentBooked {
            order: "o-13".into(),
        })
        .unwrap();
    let err = shipped.repair("o-13", Repair::Compensate).unwrap_err();
    assert!(err.to_string().contains("past the pivot"), "{err}");

    // At the pivot the booking's outcome is unknown: compensating could undo a shipped order.
    let mut booking = Kit::new();
    booking.when(order("o-14")).unwrap();
    booking.when(held("o-14")).unwrap();
    booking.when(charged("o-14")).unwrap();
    let err = booking.repair("o-14", Repair::Compensate).unwrap_err();
    assert!(err.to_string().contains("is the pivot"), "{err}");
    // Skipping the receipt finishes it.
    shipped.repair("o-13", Repair::Skip).unwrap();
    assert_eq!(shipped.status("o-13"), Some(Status::Completed));
}

/// The checkout with short timeouts, for the engines: hold (awaited release) -> charge (pivot).
#[derive(Serialize, Deserialize, Debug)]
struct QuickCheckout {
    order: String,
}

#[saga(name = "quick_checkout", key = order, attempts = 2)]
impl QuickCheckout {
    #[start]
    fn requested(event: &CheckoutRequested) -> Self {
        QuickCheckout {
            order: event.order.clone(),
        }
    }

    #[step(
        reply = StockHeld,
        fault = none,
        timeout = "300ms",
        compensate = release,
        compensated = StockReleased
    )]
    fn hold(&self) -> HoldStock {
        HoldStock {
            order: self.order.clone(),
        }
    }

    fn release(&self) -> ReleaseStock {
        ReleaseStock {
            order: self.order.clone(),
        }
    }

    #[step(pivot, reply = CardCharged, fault = CardDeclined, timeout = "5s")]
    fn charge(&self) -> ChargeCard {
        ChargeCard {
            order: self.order.clone(),
        }
    }
}

/// Inventory holds and (once `answer_releases` is set) acknowledges releases; payments
/// declines orders whose key ends in `-declined`.
fn participants<T: Transport>(app: &mut App<T>, answer_releases: &Arc<AtomicBool>) {
    app.subscribe(
        "inventory",
        |cmd: Envelope<HoldStock>, ctx: Context| async move {
            ctx.publish(StockHeld {
                order: cmd.data.order,
            })?;
            Ok::<(), HandlerError>(())
        },
    );
    let answer = answer_releases.clone();
    app.subscribe(
        "inventory",
        move |cmd: Envelope<ReleaseStock>, ctx: Context| {
            let answer = answer.load(Ordering::SeqCst);
            async move {
                if answer {
                    ctx.publish(StockReleased {
                        order: cmd.data.order,
                    })?;
                }
                Ok::<(), HandlerError>(())
            }
        },
    );
    app.subscribe(
        "payments",
        |cmd: Envelope<ChargeCard>, ctx: Context| async move {
            let order = cmd.data.order;
            if order.ends_with("-declined") {
                ctx.publish(CardDeclined { order })?;
            } else {
                ctx.publish(CardCharged { order })?;
            }
            Ok::<(), HandlerError>(())
        },
    );
}

/// Waits until instance `order` has `status`.
async fn reaches<T: Transport>(
    running: &Running<T>,
    order: &str,
    status: Status,
) -> event_runtime::saga::InstanceRecord {
    let sagas = running.sagas().expect("SQL stores");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let instance = sagas.instance("quick_checkout", order).await.unwrap();
        if let Some(instance) = instance.filter(|i| i.status == status) {
            return instance;
        }
        assert!(
            Instant::now() < deadline,
            "quick_checkout {order} never became {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn stuck_and_resumed<T: Transport>(mut app: App<T>, prefix: &str) {
    let answer_releases = Arc::new(AtomicBool::new(false));
    app.saga::<Orchestrated<QuickCheckout>>();
    participants(&mut app, &answer_releases);
    let running = app.start().await.unwrap();
    let publisher = running.publisher();
    let (ok, declined) = (format!("{prefix}-ok"), format!("{prefix}-declined"));
    for order in [&ok, &declined] {
        publisher
            .publish(Envelope::event(CheckoutRequested {
                order: order.clone(),
                cents: 100,
            }))
            .await
            .unwrap();
    }
    reaches(&running, &ok, Status::Completed).await;
    // Declined, and the release is never acknowledged: sent twice, then stuck.
    let stuck = reaches(&running, &declined, Status::Stuck).await;
    assert_eq!(
        stuck.reason.as_deref(),
        Some("the compensation of step `hold` got no answer after 2 attempts")
    );
    let sagas = running.sagas().unwrap();
    // The participant is fixed; an operator resumes the instance.
    answer_releases.store(true, Ordering::SeqCst);
    assert!(
        sagas
            .request_repair("quick_checkout", &declined, Repair::Resume, "ops")
            .await
            .unwrap()
    );
    let failed = reaches(&running, &declined, Status::Failed).await;
    assert_eq!(
        failed.reason.as_deref(),
        Some("step `charge` failed: payments.card_declined")
    );
    let history = sagas.history("quick_checkout", &declined).await.unwrap();
    let causes: Vec<&str> = history.iter().map(|h| h.message_type.as_str()).collect();
    assert!(
        causes.contains(&"timer:repair:resume:ops"),
        "the repair is in the history: {causes:?}"
    );
    assert_eq!(
        causes.last(),
        Some(&"inventory.stock_released"),
        "{causes:?}"
    );
    // A finished instance takes no repair.
    assert!(
        !sagas
            .request_repair("quick_checkout", &declined, Repair::Resume, "ops")
            .await
            .unwrap()
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_and_resumed_on_the_embedded_engine() {
    let dir = common::tempdir("saga-steps");
    let app = App::embedded(dir.join("shop.db")).await.unwrap();
    stuck_and_resumed(app, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_and_resumed_on_nats_with_postgres_stores() {
    let Some(app) = common::nats_with_postgres().await else {
        return;
    };
    stuck_and_resumed(app, "nats").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_and_resumed_on_kafka_with_postgres_stores() {
    let Some(app) = common::kafka_with_postgres().await else {
        return;
    };
    stuck_and_resumed(app, "kafka").await;
}
