//! A person who opens their feed is likely to write soon. The gateway says so on
//! `live.present.<user>`; this reads what their first message needs — their tasks (`context`)
//! and their earlier days (`pyramid`) — then, so the first turn is as quick as the ones after it.
//! What is already warm is not read again, and a first message arriving during the read waits
//! for it rather than reading again. Only a head start: `AT_ONCE` warm-ups run at a time,
//! at most `WAITING` people wait their turn, and a presence heard beyond that is let go, so a
//! storm of reconnects costs little.

use futures_util::StreamExt;
use mainloop_bus::Bus;
use mainloop_events::subjects;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::pyramid::Pyramid;

/// Warm-ups running at once.
const AT_ONCE: usize = 16;
/// People waiting to be warmed; beyond this, presence is let go.
const WAITING: usize = 1024;

/// Follows the presence subject (in `tasks`, until `shutdown`), warming each person heard of.
pub async fn start(
    bus: &Bus,
    context: Context,
    pyramid: Pyramid,
    tasks: &mut tokio::task::JoinSet<()>,
    shutdown: CancellationToken,
) -> Result<(), async_nats::SubscribeError> {
    let mut present = bus.client().subscribe(subjects::PRESENT_ALL).await?;
    // Listening before the service says it is ready: a presence said after that is heard.
    if let Err(err) = bus.client().flush().await {
        tracing::warn!(error = %err, "presence subscription not confirmed");
    }
    let (heard, mut waiting) = tokio::sync::mpsc::channel::<String>(WAITING);
    let stop = shutdown.clone();
    tasks.spawn(async move {
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => return,
                message = present.next() => match message {
                    Some(message) => message,
                    None => return,
                },
            };
            let user = message.subject.trim_start_matches("live.present.");
            // A full queue means a storm: this person's first message reads for itself.
            let _ = heard.try_send(user.to_string());
        }
    });
    tasks.spawn(async move {
        let warming = futures_util::stream::poll_fn(move |cx| waiting.poll_recv(cx)).for_each_concurrent(
            AT_ONCE,
            |user| {
                let (context, pyramid) = (&context, &pyramid);
                async move {
                    let today = chrono::Utc::now().date_naive();
                    let (_, recalled) = tokio::join!(context.about(&user), pyramid.recall(&user, today));
                    if let Err(err) = recalled {
                        tracing::debug!(%user, error = %err, "earlier days not read ahead");
                    }
                }
            },
        );
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = warming => {}
        }
    });
    Ok(())
}
