//! `pd-e2e-hold`: waits until it receives SIGTERM or SIGINT, then exits 0.
//!
//! The main process of the client containers in the compose federation tests: those
//! containers stay up so that the tests can run `chat` in them with `docker exec` (far
//! cheaper than a container per command), and an image holding only static binaries has no
//! `sleep`. As PID 1 of its container it must handle SIGTERM itself, or `docker stop` would
//! wait for its timeout.

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
