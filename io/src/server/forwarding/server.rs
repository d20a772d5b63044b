//! The primary's side of a forwarding connection: it reads forwarded requests, runs each on
//! the node's executor and writes each response back as soon as it is ready.

use std::future::Future;
use std::sync::Arc;

use coffer_core::forwarding::{ForwardMessage, ForwardedAnswer, ForwardedRequest, ForwardedResult};
use coffer_core::replication::ReplicationConfig;
use coffer_core::replication::frame::{FrameDecoder, FrameLimits, encode_payload};
use coffer_core::storage::Storage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::server::environment::Environment;
use crate::server::net::Stream;
use crate::server::node::Node;

/// Bytes read from a connection at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Runs forwarded requests for one secondary.
pub trait ForwardExecutor: Send + Sync + 'static {
    /// Runs `request` from `secondary_id` at most once and returns the response.
    fn execute(
        &self,
        secondary_id: &str,
        request: ForwardedRequest,
    ) -> impl Future<Output = ForwardedAnswer> + Send;
}

/// The executor of a primary node: the writer runs each request with the at-most-once record.
pub struct NodeExecutor<S, E>(pub Arc<Node<S, E>>);

impl<S: Storage + 'static, E: Environment> ForwardExecutor for NodeExecutor<S, E> {
    async fn execute(&self, secondary_id: &str, request: ForwardedRequest) -> ForwardedAnswer {
        self.0.execute_forwarded(secondary_id, request).await
    }
}

/// Bounds of one forwarding connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForwardingLimits {
    /// Frame and message size limits.
    pub frames: FrameLimits,
    /// Maximum number of requests running at once. A request beyond it gets a 503 error at
    /// once, which the secondary returns to its client. The secondary's own bound is the same
    /// setting, so only a misbehaving secondary reaches it.
    pub max_in_flight: usize,
}

impl ForwardingLimits {
    /// Takes the frame limits and the in-flight bound from the replication settings.
    pub fn from_config(config: &ReplicationConfig) -> ForwardingLimits {
        ForwardingLimits {
            frames: FrameLimits {
                max_frame_payload: config.max_frame_payload,
                max_message_size: config.max_message_size,
            },
            max_in_flight: config.forwarding_max_in_flight,
        }
    }
}

/// Serves forwarded requests on `stream` until the secondary closes it or sends bytes that
/// do not decode. `secondary_id` comes from the secondary's certificate.
pub async fn serve_forwarding<S, X>(
    stream: S,
    secondary_id: String,
    executor: Arc<X>,
    limits: ForwardingLimits,
) -> String
where
    S: Stream,
    X: ForwardExecutor,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut decoder = FrameDecoder::new(limits.frames);
    let mut running: JoinSet<ForwardedAnswer> = JoinSet::new();
    let mut buffer = vec![0u8; READ_CHUNK];
    loop {
        tokio::select! {
            biased;
            Some(joined) = running.join_next(), if !running.is_empty() => {
                let Ok(answer) = joined else {
                    return "a forwarded request's task failed".to_owned();
                };
                if let Err(reason) = send(&mut writer, &answer, limits.frames).await {
                    return reason;
                }
            }
            read = reader.read(&mut buffer) => {
                let count = match read {
                    Ok(0) => return "the secondary closed the connection".to_owned(),
                    Ok(count) => count,
                    Err(error) => return format!("reading from the secondary failed: {error}"),
                };
                decoder.push(&buffer[..count]);
                loop {
                    let request = match decoder.poll_payload::<ForwardMessage>() {
                        Ok(None) => break,
                        Ok(Some(ForwardMessage::Request(request))) => request,
                        Ok(Some(ForwardMessage::Answer(_))) => {
                            return "the secondary sent an answer, which only a primary sends".to_owned();
                        }
                        Err(error) => return format!("invalid forwarding frame: {error}"),
                    };
                    if running.len() >= limits.max_in_flight.max(1) {
                        let answer = busy(&request, limits.max_in_flight);
                        if let Err(reason) = send(&mut writer, &answer, limits.frames).await {
                            return reason;
                        }
                        continue;
                    }
                    log_request(&secondary_id, &request);
                    let executor = Arc::clone(&executor);
                    let secondary_id = secondary_id.clone();
                    running.spawn(async move { executor.execute(&secondary_id, request).await });
                }
            }
        }
    }
}

/// Logs one forwarded request with the client's identity, never its data.
fn log_request(secondary_id: &str, request: &ForwardedRequest) {
    tracing::info!(
        %secondary_id,
        request_id = %request.request_id,
        path = %request.path,
        operation = ?request.operation,
        accessor = %request.identity.accessor,
        display_name = %request.identity.display_name,
        "forwarded request"
    );
}

fn busy(request: &ForwardedRequest, max_in_flight: usize) -> ForwardedAnswer {
    ForwardedAnswer {
        request_id: request.request_id.clone(),
        result: ForwardedResult::Error {
            status: 503,
            messages: vec![format!(
                "the primary is already running the maximum of {max_in_flight} forwarded \
                 requests for this secondary; retry later"
            )],
        },
        position: None,
    }
}

async fn send<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut W,
    answer: &ForwardedAnswer,
    limits: FrameLimits,
) -> Result<(), String> {
    let message = ForwardMessage::Answer(answer.clone());
    let frames = match encode_payload(&message, limits) {
        Ok(frames) => frames,
        Err(error) => {
            // A response too large for a message is replaced by an error, so the secondary is
            // not left waiting for its whole deadline.
            tracing::warn!(request_id = %answer.request_id, %error, "the response to a forwarded request does not fit in a message");
            let fallback = ForwardMessage::Answer(ForwardedAnswer {
                request_id: answer.request_id.clone(),
                result: ForwardedResult::Error {
                    status: 500,
                    messages: vec![format!(
                        "the primary's response is too large to return: {error}"
                    )],
                },
                position: answer.position.clone(),
            });
            encode_payload(&fallback, limits).map_err(|error| error.to_string())?
        }
    };
    for frame in frames {
        writer
            .write_all(&frame)
            .await
            .map_err(|error| format!("writing to the secondary failed: {error}"))?;
    }
    writer
        .flush()
        .await
        .map_err(|error| format!("writing to the secondary failed: {error}"))
}
