//! A saga coordinator process for the crash tests (`tests/tests/saga_crash.rs`): two sagas
//! started by the same `Opened` event, with their participants, each a group in inbox mode that
//! writes one row per step into the table `saga_ledger` in its inbox transaction:
//!
//! - `order`, written by hand: open -> reserve -> charge -> a timer -> ship;
//! - `checkout`, declared with `#[saga]`: hold (compensated by an awaited unhold) -> pay (the
//!   pivot; declined for odd order numbers, which unwinds the hold).
//!
//! It exits 0 once `expected` instances of each saga have finished and the app is idle. The
//! tests kill it with SIGKILL at random points, or make it abort at a named boundary
//! (`EVT_CRASH_POINT`, the runtime's `crash-points` feature), and start it again.
//!
//! Usage: `crash_saga <engine> <expected>`, the engine being
//!
//! - `sqlite`: the log, the stores, the saga tables and the ledger in the SQLite file `CRASH_DB`;
//! - `nats` or `kafka`: the log on the NATS server `CRASH_NATS_URL` (or the Kafka bootstrap
//!   `CRASH_KAFKA_BOOTSTRAP`) under the prefix `CRASH_PREFIX`; the stores, the saga tables and
//!   the ledger in PostgreSQL at `CRASH_POSTGRES_URL`, schema `CRASH_SCHEMA`.
//!
//! `CRASH_INSTANCE` names the instance (default `crash-saga`: each restart is the same one);
//! `CRASH_CLAIM_TTL_MS` sets its groups' claim lease.

use std::time::Duration;

use event_runtime::saga::{Messages, On, Orchestrated, Saga, Step, Transition, Unknown};
use event_runtime::transport::Transport;
use event_runtime::{App, Command, Context, DomainEvent, Envelope, HandlerError, Stores, saga};
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

#[derive(Command, Serialize, Deserialize, Debug, Clone)]
#[command(context = "crash_checkout", name = "crash_checkout.hold")]
struct Hold {
    #[command(key)]
    order: String,
}

#[derive(Command, Serialize, Deserialize, Debug, Clone)]
#[command(context = "crash_checkout", name = "crash_checkout.unhold")]
struct Unhold {
    #[command(key)]
    order: String,
}

#[derive(Command, Serialize, Deserialize, Debug, Clone)]
#[command(context = "crash_checkout", name = "crash_checkout.pay")]
struct Pay {
    #[command(key)]
    order: String,
}

#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "crash_checkout", name = "crash_checkout.held")]
struct Held {
    #[event(key)]
    order: String,
}

#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "crash_checkout", name = "crash_checkout.unheld")]
struct Unheld {
    #[event(key)]
    order: String,
}

#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "crash_checkout", name = "crash_checkout.paid")]
struct Paid {
    #[event(key)]
    order: String,
}

#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone)]
#[event(context = "crash_checkout", name = "crash_checkout.declined")]
struct Declined {
    #[event(key)]
    order: String,
}

/// The declared saga. Its timeouts are far longer than a run, so no command is sent twice and
/// the ledger can count each step's effect once.
#[derive(Serialize, Deserialize, Debug)]
struct Checkout {
    order: String,
}

#[saga(key = order)]
impl Checkout {
    #[start]
    fn opened(event: &Opened) -> Self {
        Checkout {
            order: event.order.clone(),
        }
    }

    #[step(
        reply = Held,
        fault = none,
        timeout = "10m",
        compensate = unhold,
        compensated = Unheld
    )]
    fn hold(&self) -> Hold {
        Hold {
            order: self.order.clone(),
        }
    }

    fn unhold(&self) -> Unhold {
        Unhold {
            order: self.order.clone(),
        }
    }

    #[step(pivot, reply = Paid, fault = Declined, timeout = "10m")]
    fn pay(&self) -> Pay {
        Pay {
            order: self.order.clone(),
        }
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

/// Inbox mode, with claims (Kafka sessions) of `CRASH_CLAIM_TTL_MS` if set: how soon a killed
/// process's partitions are free for the next one.
fn options() -> event_runtime::GroupOptions {
    let defaults = event_runtime::GroupOptions::default();
    event_runtime::GroupOptions {
        inbox: true,
        claim_ttl: std::env::var("CRASH_CLAIM_TTL_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map_or(defaults.claim_ttl, Duration::from_millis),
        ..defaults
    }
}

fn participants<T: Transport>(app: &mut App<T>) {
    let inbox = options();
    app.group_options("crash-stock", inbox.clone())
        .group_options("crash-pay", inbox.clone())
        .group_options("crash-checkout", inbox.clone())
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
        )
        .subscribe(
            "crash-checkout",
            |cmd: Envelope<Hold>, ctx: Context| async move {
                book(&ctx, "hold", &cmd.data.order, cmd.id.to_string()).await?;
                ctx.publish(Held {
                    order: cmd.data.order,
                })?;
                Ok::<(), HandlerError>(())
            },
        )
        .subscribe(
            "crash-checkout",
            |cmd: Envelope<Unhold>, ctx: Context| async move {
                book(&ctx, "unhold", &cmd.data.order, cmd.id.to_string()).await?;
                ctx.publish(Unheld {
                    order: cmd.data.order,
                })?;
                Ok::<(), HandlerError>(())
            },
        )
        .subscribe(
            "crash-checkout",
            |cmd: Envelope<Pay>, ctx: Context| async move {
                book(&ctx, "pay", &cmd.data.order, cmd.id.to_string()).await?;
                let odd = cmd
                    .data
                    .order
                    .rsplit('-')
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| n % 2 == 1);
                let order = cmd.data.order;
                if odd {
                    ctx.publish(Declined { order })?;
                } else {
                    ctx.publish(Paid { order })?;
                }
                Ok::<(), HandlerError>(())
            },
        );
}

/// The participants' ledger, read to know when every effect is booked.
enum Ledger {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Ledger {
    async fn rows(&self) -> Result<i64, Error> {
        const COUNT: &str = "SELECT COUNT(*) FROM saga_ledger";
        Ok(match self {
            Ledger::Sqlite(pool) => sqlx::query_scalar(COUNT).fetch_one(pool).await?,
            Ledger::Postgres(pool) => sqlx::query_scalar(COUNT).fetch_one(pool).await?,
        })
    }
}

/// Runs `app` until `expected` instances of each saga finished, every effect is booked (five
/// per order, and an unhold for each declined, odd, order) and the app is idle.
async fn until_done<T: Transport>(
    mut app: App<T>,
    expected: u64,
    ledger: Ledger,
) -> Result<(), Error> {
    let effects = i64::try_from(5 * expected + expected / 2)?;
    let instance = std::env::var("CRASH_INSTANCE").unwrap_or_else(|_| "crash-saga".to_owned());
    app.instance(&instance)
        .group_options("saga.order", options())
        .group_options("saga.checkout", options())
        .saga::<Order>()
        .saga::<Orchestrated<Checkout>>();
    participants(&mut app);
    let running = app.start().await?;
    let sagas = running.sagas().ok_or("SQL stores expected")?;
    loop {
        let counts = sagas.counts().await?;
        let finished = |name: &str| {
            counts
                .iter()
                .filter(|(saga, status, _)| saga == name && status.is_finished())
                .map(|(_, _, n)| n)
                .sum::<u64>()
        };
        if finished("order") >= expected
            && finished("checkout") >= expected
            && ledger.rows().await? >= effects
            && running.wait_idle(Duration::from_millis(1)).await
        {
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
        return Err("usage: crash_saga <sqlite|nats|kafka> <expected>".into());
    };
    let expected: u64 = expected.parse()?;
    match engine.as_str() {
        "sqlite" => {
            let db = var("CRASH_DB")?;
            let app = App::embedded(&db).await?;
            let ledger = sqlx::SqlitePool::connect_with(
                sqlx::sqlite::SqliteConnectOptions::new().filename(&db),
            )
            .await?;
            until_done(app, expected, Ledger::Sqlite(ledger)).await
        }
        "nats" | "kafka" => {
            let options: sqlx::postgres::PgConnectOptions = var("CRASH_POSTGRES_URL")?.parse()?;
            let schema = var("CRASH_SCHEMA")?;
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(8)
                .connect_with(options.options([("search_path", schema.as_str())]))
                .await?;
            let stores = Stores::postgres(pool.clone()).await?;
            let ledger = Ledger::Postgres(pool);
            let prefix = var("CRASH_PREFIX")?;
            if engine == "nats" {
                let transport = event_nats::NatsTransport::connect(
                    event_nats::NatsConfig::new(var("CRASH_NATS_URL")?).prefix(&prefix),
                )
                .await?;
                until_done(App::new(transport, stores), expected, ledger).await
            } else {
                // One record per produce batch: tansu 0.6 reads a partition from the first
                // batch that starts at or after the offset asked for, so a reader resuming
                // inside a batch of several records would skip the rest of that batch.
                let config = event_kafka::KafkaConfig::new(var("CRASH_KAFKA_BOOTSTRAP")?)
                    .prefix(&prefix)
                    .client_option("batch.num.messages", "1");
                let transport = event_kafka::KafkaTransport::connect(config)?;
                until_done(App::new(transport, stores), expected, ledger).await
            }
        }
        other => Err(format!("unknown engine `{other}`").into()),
    }
}
