//! Ctrl-C, SIGTERM and SIGHUP (the terminal closed). The first asks for a clean stop (save
//! the outputs, terminate, wait); the second asks to terminate now and exit.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

#[derive(Clone)]
pub struct Interrupts {
    count: watch::Receiver<u32>,
    /// Stops asked for by the program itself (a budget reached), counted as signals.
    raised: std::sync::Arc<watch::Sender<u32>>,
}

impl Interrupts {
    /// Start listening. Without signal support nothing is ever reported (and the process
    /// keeps the default behaviour).
    pub fn listen() -> Interrupts {
        Interrupts::listen_from(0)
    }

    /// Listen, counting as if `n` signals had come already (`stop` is a follow with the
    /// first Ctrl-C given: the next real one is the second).
    pub fn listen_from(n: u32) -> Interrupts {
        let (tx, rx) = watch::channel(n);
        let tx = std::sync::Arc::new(tx);
        let raised = tx.clone();
        // Registered here, before anything is launched, not later inside the task: a signal
        // that came first would otherwise still kill the process the default way.
        let streams = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        );
        if let (Ok(mut int), Ok(mut term), Ok(mut hup)) = streams {
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                        _ = hup.recv() => {}
                    }
                    tx.send_modify(|n| *n += 1);
                }
            });
        }
        Interrupts { count: rx, raised }
    }

    /// Ask for a clean stop as the first Ctrl-C does (once: a raise never ends anything at
    /// once, as a second signal would).
    pub fn raise(&self) {
        self.raised.send_modify(|n| *n = (*n).max(1));
    }

    pub fn count(&self) -> u32 {
        *self.count.borrow()
    }

    /// Resolves once at least `n` signals have arrived.
    pub async fn reached(&self, n: u32) {
        let mut rx = self.count.clone();
        while *rx.borrow_and_update() < n {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
