use std::time::Duration;

use mainloop_bus::request::{self, RequestError};
use mainloop_events::v1::{CloseIssue, CommandError, ErrorCode, IssueClosed};
use mainloop_testkit::TestNats;
use tokio_util::sync::CancellationToken;

use crate::helpers::connect;

const SUBJECT: &str = "cmd.test.close-issue";

async fn close_issue(command: CloseIssue) -> Result<IssueClosed, CommandError> {
    if command.issue_number == 0 {
        return Err(CommandError::invalid("issue_number is required"));
    }
    Ok(IssueClosed {
        effect_id: "e1".into(),
        issue_number: command.issue_number,
    })
}

#[tokio::test]
async fn commands_get_typed_answers_and_typed_refusals() -> anyhow::Result<()> {
    let nats = TestNats::start()?;
    let bus = connect(&nats).await?;
    let shutdown = CancellationToken::new();
    let server = tokio::spawn({
        let (bus, shutdown) = (bus.clone(), shutdown.clone());
        async move { request::serve(&bus, SUBJECT, "test", shutdown, close_issue).await }
    });
    bus.client().flush().await?;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let answer: IssueClosed = request::send(
        &bus,
        SUBJECT,
        &CloseIssue { issue_number: 7 },
        Duration::from_secs(2),
    )
    .await?;
    assert_eq!(answer.issue_number, 7);

    let refused = request::send::<_, IssueClosed>(
        &bus,
        SUBJECT,
        &CloseIssue { issue_number: 0 },
        Duration::from_secs(2),
    )
    .await;
    match refused {
        Err(RequestError::Rejected {
            code: ErrorCode::Invalid,
            message,
        }) => assert_eq!(message, "issue_number is required"),
        other => panic!("expected an INVALID refusal, got {other:?}"),
    }

    // Bytes that are not the command's type are refused, not guessed at.
    let garbage = bus
        .client()
        .request(SUBJECT, bytes::Bytes::from_static(b"\xff\xff\xff"))
        .await?;
    let reply = <mainloop_events::v1::CommandReply as prost::Message>::decode(garbage.payload)?;
    assert!(
        matches!(reply.result, Some(mainloop_events::v1::command_reply::Result::Error(ref e)) if e.code() == ErrorCode::Invalid),
        "{reply:?}"
    );

    shutdown.cancel();
    server.await??;
    Ok(())
}

#[tokio::test]
async fn a_command_nobody_serves_fails_fast() -> anyhow::Result<()> {
    let nats = TestNats::start()?;
    let bus = connect(&nats).await?;
    let result = request::send::<_, IssueClosed>(
        &bus,
        "cmd.nobody.home",
        &CloseIssue { issue_number: 1 },
        Duration::from_secs(5),
    )
    .await;
    assert!(matches!(result, Err(RequestError::NoResponders(_))), "{result:?}");
    Ok(())
}
