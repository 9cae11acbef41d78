//! A TCP proxy that can stop forwarding, standing for a database that hangs (as its
//! processes would under SIGSTOP): while it is hung, connections are accepted but no byte
//! moves in either direction; when it resumes, everything held back flows again.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The proxy; its tasks end when it is dropped.
pub(crate) struct HangingProxy {
    addr: SocketAddr,
    hung: watch::Sender<bool>,
    _tasks: JoinSet<()>,
}

impl HangingProxy {
    /// Forwards connections on a free loopback port to `target`.
    pub(crate) async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (hung, watching) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let hung = watching.clone();
                connections.spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write, hung.clone()),
                        pump(server_read, client_write, hung),
                    );
                });
            }
        });
        Self {
            addr,
            hung,
            _tasks: tasks,
        }
    }

    /// The address to connect to instead of the target.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops moving bytes.
    pub(crate) fn hang(&self) {
        self.hung.send_replace(true);
    }

    /// Moves bytes again, those held back first.
    pub(crate) fn resume(&self) {
        self.hung.send_replace(false);
    }
}

/// Copies from `from` to `to`, holding every chunk back while the proxy is hung.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut hung: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if hung.wait_for(|h| !*h).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if hung.wait_for(|h| !*h).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
