//! A saga coordinator process for the crash tests (`tests/tests/crash.rs`): the checkout saga
//! `order` (open -> reserve -> charge -> a timer -> ship) with its three participants, each a
//! group in inbox mode that writes one row per step into the table `saga_ledger` in its inbox
//! transaction. It exits 0 once `expected` instances have completed and the app is idle. The
//! tests kill it with SIGKILL at random points and start it again.
//!
//! Usage: `crash_saga <engine> <expected>`, the engine being
//!
//! - `sqlite`: the log, the stores, the saga tables and the ledger in the SQLite file `CRASH_DB`;
//! - `nats`: the log on the NATS server `CRASH_NATS_URL` under the prefix `CRASH_PREFIX`; the
//!   stores, the saga tables and the ledger in PostgreSQL at `CRASH_POSTGRES_URL`, schema
//!   `CRASH_SCHEMA`.

use std::time::Duration;

use event_runtime::saga::{Messages, On, Saga, Status, Step, Transition, Unknown};
use event_runtime::transport::Transport;
use event_runtime::{App, Command, Context, DomainEvent, Envelope, HandlerError, Stores};
use serde::{Deserialize, Serialize};

/// A checkout opens (what the test publishes).
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "crash_orders", name = "crash_orders.opened")]
pub struct Opened {
    #[event(key)]
    order: String,
}

#[derive(Command, Serialize, Deserialize, Debug, Clone)]
#[command(context = "crash_stock", name = "crash_stock.reserve")]
struct Reserve {
    #[command(key)]
    order: String,
}

#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "crash_stock", name = "crash_stock.reserved")]
struct Reserved {
    #[event(key)]
    order: String,
}

#[derive(Command, Serialize, Deserialize, Debug, Clone)]
#[command(context = "crash_pay", name = "crash_pay.charge")]
struct Charge {
    #[command(key)]
    order: String,
}

#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "crash_pay", name = "crash_pay.charged")]
struct Charged {
    #[event(key)]
    order: String,
}

#[derive(Command, Serialize, Deserialize, Debug, Clone)]
#[command(context = "crash_ship", name = "crash_ship.ship")]
struct Ship {
    #[command(key)]
    order: String,
}

/// How long after the charge the order ships (a timer that must survive the kills).
const SHIP_AFTER: Duration = Duration::from_millis(150);

#[derive(Serialize, Deserialize, Debug)]
enum Order {
    Reserving,
    Charging,
    Waiting,
    Shipped,
}

impl Saga for Order {
    const NAME: &'static str = "order";

    fn messages(on: &mut Messages<Self>) {
        on.on::<Opened>().on::<Reserved>().on::<Charged>();
    }

    fn timeout(self, _: &str, step: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        match self {
            Order::Waiting => {
                step.send(Ship {
                    order: step.key().to_owned(),
                })?;
                Ok(Transition::complete(Order::Shipped))
            }
            other => Err(HandlerError::permanent(format!(
                "the ship timer fired in state {other:?}"
            ))),
        }
    }
}

impl On<Opened> for Order {
    const UNKNOWN: Unknown = Unknown::Start;

    fn key(event: &Opened) -> String {
        event.order.clone()
    }

    fn start(event: &Opened, step: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        step.send(Reserve {
            order: event.order.clone(),
        })?;
        Ok(Transition::next(Order::Reserving))
    }

    fn handle(self, _: &Opened, _: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        Err(HandlerError::permanent("opened twice"))
    }
}

impl On<Reserved> for Order {
    fn key(event: &Reserved) -> String {
        event.order.clone()
    }

    fn handle(
        self,
        event: &Reserved,
        step: &mut Step<'_>,
    ) -> Result<Transition<Self>, HandlerError> {
        let Order::Reserving = self else {
            return Err(HandlerError::permanent(format!(
                "reserved in state {self:?}"
            )));
        };
        step.send(Charge {
            order: event.order.clone(),
        })?;
        Ok(Transition::next(Order::Charging))
    }
}

impl On<Charged> for Order {
    fn key(event: &Charged) -> String {
        event.order.clone()
    }

    fn handle(self, _: &Charged, step: &mut Step<'_>) -> Result<Transition<Self>, HandlerError> {
        let Order::Charging = self else {
            return Err(HandlerError::permanent(format!(
                "charged in state {self:?}"
            )));
        };
        step.schedule("ship", SHIP_AFTER);
        Ok(Transition::next(Order::Waiting))
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn var(name: &str) -> Result<String, Error> {
    std::env::var(name).map_err(|_| format!("{name} is not set").into())
}

/// Writes the ledger row of `step` for `order` in the inbox transaction, whichever database.
async fn book(ctx: &Context, step: &str, order: &str, id: String) -> Result<(), HandlerError> {
    if let Some(mut tx) = ctx.transaction::<sqlx::Sqlite>().await {
        sqlx::query("INSERT INTO saga_ledger (step, order_id, command_id) VALUES (?, ?, ?)")
            .bind(step)
            .bind(order)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        return Ok(());
    }
    let mut tx = ctx
        .transaction::<sqlx::Postgres>()
        .await
        .ok_or("inbox mode expected")?;
    sqlx::query("INSERT INTO saga_ledger (step, order_id, command_id) VALUES ($1, $2, $3)")
        .bind(step)
        .bind(order)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn participants<T: Transport>(app: &mut App<T>) {
    let inbox = event_runtime::GroupOptions {
        inbox: true,
        ..event_runtime::GroupOptions::default()
    };
    app.group_options("crash-stock", inbox.clone())
        .group_options("crash-pay", inbox.clone())
        .group_options("crash-ship", inbox)
        .subscribe(
            "crash-stock",
            |cmd: Envelope<Reserve>, ctx: Context| async move {
                book(&ctx, "reserve", &cmd.data.order, cmd.id.to_string()).await?;
                ctx.publish(Reserved {
                    order: cmd.data.order,
                })?;
                Ok::<(), HandlerError>(())
            },
        )
        .subscribe(
            "crash-pay",
            |cmd: Envelope<Charge>, ctx: Context| async move {
                book(&ctx, "charge", &cmd.data.order, cmd.id.to_string()).await?;
                ctx.publish(Charged {
                    order: cmd.data.order,
                })?;
                Ok::<(), HandlerError>(())
            },
        )
        .subscribe(
            "crash-ship",
            |cmd: Envelope<Ship>, ctx: Context| async move {
                book(&ctx, "ship", &cmd.data.order, cmd.id.to_string()).await?;
                Ok::<(), HandlerError>(())
            },
        );
}

/// Runs `app` until `expected` instances completed and every order shipped.
async fn until_done<T: Transport>(mut app: App<T>, expected: u64) -> Result<(), Error> {
    app.instance("crash-saga").saga::<Order>();
    participants(&mut app);
    let running = app.start().await?;
    let sagas = running.sagas().ok_or("SQL stores expected")?;
    loop {
        let completed = sagas
            .counts()
            .await?
            .into_iter()
            .filter(|(saga, status, _)| saga == "order" && *status == Status::Completed)
            .map(|(_, _, n)| n)
            .sum::<u64>();
        if completed >= expected && running.wait_idle(Duration::from_millis(1)).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let [_, engine, expected] = args.as_slice() else {
        return Err("usage: crash_saga <sqlite|nats> <expected>".into());
    };
    let expected: u64 = expected.parse()?;
    match engine.as_str() {
        "sqlite" => until_done(App::embedded(var("CRASH_DB")?).await?, expected).await,
        "nats" => {
            let options: sqlx::postgres::PgConnectOptions = var("CRASH_POSTGRES_URL")?.parse()?;
            let schema = var("CRASH_SCHEMA")?;
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(8)
                .connect_with(options.options([("search_path", schema.as_str())]))
                .await?;
            let transport = event_nats::NatsTransport::connect(
                event_nats::NatsConfig::new(var("CRASH_NATS_URL")?).prefix(&var("CRASH_PREFIX")?),
            )
            .await?;
            until_done(App::new(transport, Stores::postgres(pool).await?), expected).await
        }
        other => Err(format!("unknown engine `{other}`").into()),
    }
}
