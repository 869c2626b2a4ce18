//! Wiring the handlers declared with `#[handler]`: all at once (`App::register_all`), a module's
//! (`App::register_module`), beside explicit `App::register`, and the start-up error for a
//! declared handler nobody wired. (Every app of this binary sees all three declarations below.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_runtime::app::AppError;
use event_runtime::transport::memory::MemoryTransport;
use event_runtime::{App, Context, DomainEvent, Envelope, HandlerError, Stores, handler};
use serde::{Deserialize, Serialize};

#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "orders")]
pub(crate) struct OrderPlaced {
    #[event(key)]
    order_id: String,
}

/// Which handler saw which order, in the order they ran.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(&'static str, String)>>>);

fn saw(ctx: &Context, who: &'static str, event: &Envelope<OrderPlaced>) {
    let seen = ctx.state::<Seen>().expect("state registered");
    seen.0
        .lock()
        .unwrap()
        .push((who, event.data.order_id.clone()));
}

mod billing {
    use super::*;

    #[handler(group = "billing")]
    pub(crate) async fn charge(
        event: Envelope<OrderPlaced>,
        ctx: Context,
    ) -> Result<(), HandlerError> {
        saw(&ctx, "billing::charge", &event);
        Ok(())
    }

    pub(crate) mod invoices {
        use super::*;

        #[handler(group = "invoicing")]
        pub(crate) async fn invoice(
            event: Envelope<OrderPlaced>,
            ctx: Context,
        ) -> Result<(), HandlerError> {
            saw(&ctx, "billing::invoices::invoice", &event);
            Ok(())
        }
    }
}

mod shipping {
    use super::*;

    #[handler(group = "shipping")]
    pub(crate) async fn ship(
        event: Envelope<OrderPlaced>,
        ctx: Context,
    ) -> Result<(), HandlerError> {
        saw(&ctx, "shipping::ship", &event);
        Ok(())
    }
}

async fn app() -> (App<MemoryTransport>, Seen) {
    let seen = Seen::default();
    let mut app = App::new(MemoryTransport::new(), Stores::in_memory().await.unwrap());
    app.with_state(seen.clone());
    (app, seen)
}

async fn run(app: App<MemoryTransport>, seen: &Seen) -> Vec<&'static str> {
    let running = app.start().await.expect("every declared handler is wired");
    running
        .publisher()
        .publish(Envelope::event(OrderPlaced {
            order_id: "o-1".into(),
        }))
        .await
        .unwrap();
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    running.stop().await;
    let mut who: Vec<&'static str> = seen.0.lock().unwrap().iter().map(|(w, _)| *w).collect();
    who.sort_unstable();
    who
}

const ALL: [&str; 3] = [
    "billing::charge",
    "billing::invoices::invoice",
    "shipping::ship",
];

#[tokio::test]
async fn register_all_wires_every_declared_handler_in_its_group() {
    let (mut app, seen) = app().await;
    app.register_all();
    assert_eq!(run(app, &seen).await, ALL);
}

#[tokio::test]
async fn modules_are_wired_one_by_one_beside_explicit_registration() {
    let (mut app, seen) = app().await;
    app.register(shipping::ship)
        .register_module(concat!(module_path!(), "::billing"))
        // Already registered, explicitly or by the module: not subscribed twice (which would
        // be a DuplicateHandler error at start).
        .register_all();
    assert_eq!(run(app, &seen).await, ALL);
}

#[tokio::test]
async fn a_declared_handler_nobody_wired_stops_the_start() {
    let (mut app, _) = app().await;
    // `billing` and the module inside it, not `shipping`; a module name is not a prefix match.
    app.register_module(&format!("{}::billing", module_path!()))
        .register_module(&format!("{}::ship", module_path!()));
    let Err(err) = app.start().await else {
        panic!("started with `shipping::ship` unwired");
    };
    match &err {
        AppError::NotWired(names) => {
            assert_eq!(names, &[concat!(module_path!(), "::shipping::ship")]);
        }
        other => panic!("expected NotWired, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("shipping::ship"), "{message}");
}
