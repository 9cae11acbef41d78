//! A listener's slot: the control connection over which the relay offers it conversations
//! (`incoming`), pings it every [`SLOT_PING_SECS`] seconds without other traffic and
//! answers its pings; a slot from which nothing came for [`SLOT_IDLE_SECS`] seconds, or
//! that sends anything else, is closed.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use pd_proto::relay::{ControlFrame, MAX_CONTROL_FRAME_LEN, SLOT_IDLE_SECS, SLOT_PING_SECS};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Time allowed for writing one control frame.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The codec of control frames: a 4-byte big-endian length, then at most
/// [`MAX_CONTROL_FRAME_LEN`] bytes.
pub(crate) fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(MAX_CONTROL_FRAME_LEN)
        .new_codec()
}

/// Why a slot ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SlotEnd {
    /// The listener closed it.
    Closed,
    /// Nothing came for the idle time.
    Idle,
    /// The listener broke the control protocol, or the connection failed.
    Failed(String),
    /// The node is stopping.
    Stopping,
}

/// Runs a slot over `io` until it ends: sends the frames of `control` and the pings.
pub(crate) async fn run<S>(
    io: S,
    mut control: mpsc::Receiver<ControlFrame>,
    mut stop: watch::Receiver<bool>,
) -> SlotEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut framed = Framed::new(io, codec());
    let ping_every = Duration::from_secs(SLOT_PING_SECS);
    let idle = Duration::from_secs(SLOT_IDLE_SECS);
    let mut heard = Instant::now();
    let mut sent = Instant::now();
    loop {
        let out = tokio::select! {
            frame = framed.next() => {
                heard = Instant::now();
                match frame {
                    None => return SlotEnd::Closed,
                    Some(Err(e)) => return SlotEnd::Failed(e.to_string()),
                    Some(Ok(body)) => match ControlFrame::decode(&body) {
                        Ok(ControlFrame::Ping) => ControlFrame::Pong,
                        Ok(ControlFrame::Pong) => continue,
                        Ok(ControlFrame::Incoming { .. }) => {
                            return SlotEnd::Failed("the listener sent incoming".into());
                        }
                        Err(e) => return SlotEnd::Failed(e.to_string()),
                    },
                }
            }
            frame = control.recv() => match frame {
                Some(frame) => frame,
                None => return SlotEnd::Stopping,
            },
            () = sleep_until(sent + ping_every) => ControlFrame::Ping,
            () = sleep_until(heard + idle) => return SlotEnd::Idle,
            _ = stop.wait_for(|stopping| *stopping) => return SlotEnd::Stopping,
        };
        let body = out.encode();
        let written = timeout(
            WRITE_TIMEOUT,
            framed.send(bytes::Bytes::from(body[4..].to_vec())),
        )
        .await;
        match written {
            Ok(Ok(())) => sent = Instant::now(),
            Ok(Err(e)) => return SlotEnd::Failed(e.to_string()),
            Err(_) => return SlotEnd::Failed("the listener stopped reading".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_slot_pings_answers_pings_offers_and_closes_when_silent() {
        let (listener, relay) = tokio::io::duplex(4096);
        let (tx, rx) = mpsc::channel(4);
        let (_stop, stopped) = watch::channel(false);
        let slot = tokio::spawn(run(relay, rx, stopped));
        let mut listener = Framed::new(listener, codec());
        let id = pd_proto::relay::new_conversation_id();
        tx.send(ControlFrame::Incoming { id: id.clone() })
            .await
            .unwrap();
        let got = listener.next().await.unwrap().unwrap();
        assert_eq!(
            ControlFrame::decode(&got).unwrap(),
            ControlFrame::Incoming { id }
        );
        listener
            .send(bytes::Bytes::from(
                ControlFrame::Ping.encode()[4..].to_vec(),
            ))
            .await
            .unwrap();
        let got = listener.next().await.unwrap().unwrap();
        assert_eq!(ControlFrame::decode(&got).unwrap(), ControlFrame::Pong);
        // Quiet: the relay pings after SLOT_PING_SECS.
        let got = listener.next().await.unwrap().unwrap();
        assert_eq!(ControlFrame::decode(&got).unwrap(), ControlFrame::Ping);
        // Still quiet: the slot is closed after SLOT_IDLE_SECS without a word.
        assert_eq!(slot.await.unwrap(), SlotEnd::Idle);
    }
}
