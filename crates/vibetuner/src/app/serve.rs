//! Serving: listen, report readiness to systemd, run the in-process worker, and shut down
//! gracefully (in-flight requests finish, SSE streams end, the worker drains).

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use super::App;
use crate::config::Settings;

impl App {
    /// Serves on `listener` until `shutdown` resolves, then lets in-flight requests finish
    /// (up to `SHUTDOWN_TIMEOUT` seconds).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        settings: Settings,
        root: &Path,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.serve_with(listener, settings, root, shutdown, false)
            .await
    }

    /// [`App::serve`], running the worker in this process whatever the queue when `worker`
    /// (with the store's queue it runs here anyway).
    pub(super) async fn serve_with(
        self,
        listener: tokio::net::TcpListener,
        mut settings: Settings,
        root: &Path,
        shutdown: impl Future<Output = ()> + Send + 'static,
        worker: bool,
    ) -> anyhow::Result<()> {
        let addr = listener.local_addr()?;
        settings.port = addr.port();
        if let Some(warning) = settings.session_key_warning() {
            tracing::warn!("{warning}");
        }
        if !settings.is_prod() && !addr.ip().is_loopback() {
            tracing::warn!(
                "DEVELOPMENT SERVER ON A NON-LOOPBACK ADDRESS ({addr}): other machines can reach it, \
                 and in dev sign-in links follow the request's Host header. Bind 127.0.0.1, or \
                 set ENVIRONMENT=prod for a server others use"
            );
        }
        let built = self.build(settings, root).await?;
        warn_if_bundle_missing(built.root());
        let indexes = built.start().await?;
        let settings = built.settings();
        built
            .store()
            .spawn_ttl_sweeper(Duration::from_secs(settings.store_ttl_interval_secs));
        tracing::info!(store = built.store().kind(), indexes, "database ready");
        let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
        let mut worker_stopping = stopping_rx.clone();
        let in_process_worker = crate::tasks::spawn_in_process(
            &built,
            async move {
                let _ = worker_stopping.wait_for(|stopping| *stopping).await;
            },
            worker,
        );
        if worker && in_process_worker.is_none() {
            tracing::info!("--worker: the app registers no tasks, so there is no worker to run");
        }
        notify_systemd();
        let grace = Duration::from_secs(settings.shutdown_timeout_secs);
        tracing::info!(
            app = %built.project().project_slug,
            version = %built.version(),
            environment = %settings.environment,
            root = %built.root().display(),
            "listening on http://{addr}"
        );
        let broadcaster = built.broadcaster().clone();
        let limits = super::listen::Limits::new(settings, built.security().trusted_proxies.clone());
        let server =
            super::listen::serve_connections(listener, built.stack.clone(), limits, async move {
                shutdown.await;
                tracing::info!("shutting down: finishing in-flight requests");
                let _ = stopping_tx.send(true);
                broadcaster.close();
            });
        let deadline = async move {
            let _ = stopping_rx.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            () = server => {}
            () = deadline => tracing::warn!("requests still running after {}s; exiting anyway", grace.as_secs()),
        }
        if let Some(worker) = in_process_worker {
            worker.stop().await;
        }
        built.stop().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The listening socket handed over by the process that started this one (`LISTEN_FDS`, as
/// systemd socket activation, `systemfd` and `vibetuner dev` pass it), if any.
pub(super) fn inherited_listener() -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let mut fds = listenfd::ListenFd::from_env();
    let Some(listener) = fds
        .take_tcp_listener(0)
        .map_err(|e| anyhow::anyhow!("LISTEN_FDS is set but fd 3 is not a TCP listener: {e}"))?
    else {
        return Ok(None);
    };
    listener.set_nonblocking(true)?;
    Ok(Some(tokio::net::TcpListener::from_std(listener)?))
}

/// Tells systemd (`Type=notify`) the server is ready and, when `WatchdogSec` is set, keeps
/// pinging its watchdog from the runtime so a stalled process gets restarted. No-op elsewhere.
pub(super) fn notify_systemd() {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!("cannot notify systemd of readiness: {e}");
    }
    if let Some(timeout) = sd_notify::watchdog_enabled().filter(|t| !t.is_zero()) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(timeout / 2);
            loop {
                tick.tick().await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        });
    }
}

fn warn_if_bundle_missing(root: &Path) {
    let bundle = root.join("assets/statics/css/bundle.css");
    if !bundle.is_file() {
        tracing::warn!(
            "CSS bundle not built ({}): pages render unstyled. Build it with `bun install && bun run build` (or `npm install && npm run build`) in {}",
            bundle.display(),
            root.display()
        );
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
