//! `#[saga]`: an orchestrated checkout declared as steps. The test kit runs it on a virtual
//! clock: the unwinds in reverse order, the timed-out step compensated too, the pivot sent again
//! and then stuck, an awaited compensation, answers delivered twice, and the structure check
//! derived from the declared steps (which fails for a saga whose compensation sends nothing).

use std::time::Duration;

use event_runtime::saga::{Messages, Orchestrated, SagaTest, Status, Step, StepSpec, Steps};
use event_runtime::{Command, DomainEvent, HandlerError, saga};
use serde::{Deserialize, Serialize};

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
