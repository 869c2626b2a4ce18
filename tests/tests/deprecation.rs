//! Deprecated versions at run time: counted when published and consumed, and refused for
//! publishing after their sunset date (by the publisher and by a handler's `Context`), unless
//! the policy says otherwise.

use std::time::Duration;

use event_runtime::deprecation::DeprecationPolicy;
use event_runtime::dlq::LetterFilter;
use event_runtime::error::EncodeError;
use event_runtime::publish::PublishError;
use event_runtime::{App, Context, DomainEvent, Envelope, HandlerError};
use serde::{Deserialize, Serialize};

/// Deprecated, sunset long ago.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(
    context = "legacy",
    deprecated(
        since = "2019-01-01",
        sunset = "2020-01-01",
        note = "publish legacy.moved"
    )
)]
struct Retired {
    #[event(key)]
    id: String,
}

/// Deprecated, sunset far ahead.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(
    context = "fading",
    deprecated(since = "2026-01-01", sunset = "2999-12-31")
)]
struct Fading {
    #[event(key)]
    id: String,
    /// Whether the handler emits a `Retired` (refused: past its sunset).
    emit_retired: bool,
}

/// Not deprecated: never counted.
#[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(context = "fading")]
struct Current {
    #[event(key)]
    id: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprecated_versions_are_counted_and_refused_after_their_sunset() {
    let mut app = App::in_memory().await.unwrap();
    app.subscribe::<Fading, _>("g", |event: Envelope<Fading>, ctx: Context| async move {
        if event.data.emit_retired {
            ctx.publish(Retired {
                id: event.data.id.clone(),
            })
            .map_err(HandlerError::permanent)?;
        }
        Ok(())
    })
    .subscribe::<Current, _>("g", |_: Envelope<Current>, _: Context| async { Ok(()) });
    let running = app.start().await.unwrap();
    let publisher = running.publisher();

    let fading = |id: &str, emit_retired| {
        Envelope::event(Fading {
            id: id.into(),
            emit_retired,
        })
    };
    publisher.publish(fading("f-1", false)).await.unwrap();
    publisher
        .publish(Envelope::event(Current { id: "c-1".into() }))
        .await
        .unwrap();
    // Past its sunset: refused, naming the version, the date and what to use instead.
    let err = publisher
        .publish(Envelope::event(Retired { id: "r-1".into() }))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PublishError::Encode(EncodeError::Sunset {
                name: "legacy.retired",
                version: 1,
                sunset: "2020-01-01",
                ..
            })
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("2020-01-01") && text.contains("publish legacy.moved"),
        "{text}"
    );
    // A handler emitting it fails the same way; its record goes to the dead letters.
    publisher.publish(fading("f-2", true)).await.unwrap();
    assert!(running.wait_idle(Duration::from_secs(10)).await);
    let letters = running
        .dead_letters()
        .list(&LetterFilter::default())
        .await
        .unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0].reason.contains("sunset"),
        "{}",
        letters[0].reason
    );

    let uses = running.deprecated_uses();
    let fading_use = uses
        .iter()
        .find(|u| u.name == "fading.fading")
        .expect("counted");
    assert_eq!(
        (fading_use.published, fading_use.consumed, fading_use.sunset),
        (2, 2, Some("2999-12-31"))
    );
    assert!(
        uses.iter().all(|u| u.name != "fading.current"),
        "not deprecated: {uses:?}"
    );
    assert!(
        uses.iter().all(|u| u.name != "legacy.retired"),
        "refused, so never published: {uses:?}"
    );
    running.stop().await;
}

#[tokio::test]
async fn the_policy_can_let_a_sunset_version_through() {
    let mut app = App::in_memory().await.unwrap();
    let publisher = app.publisher();
    // Set after the publisher was taken: it applies to that publisher too.
    app.deprecation_policy(DeprecationPolicy {
        refuse_after_sunset: false,
    });
    publisher
        .publish(Envelope::event(Retired { id: "r-1".into() }))
        .await
        .unwrap();
    let running = app.start().await.unwrap();
    let uses = running.deprecated_uses();
    assert_eq!(uses.len(), 1, "{uses:?}");
    assert_eq!((uses[0].name, uses[0].published), ("legacy.retired", 1));
    running.stop().await;
}
