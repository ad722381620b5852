//! A TCP fault proxy for tests: it listens on a loopback port, forwards every connection to a
//! target, and can be told at run time to fail the way networks fail.
//!
//! - [`FaultProxy::pass`]: forward bytes both ways (the initial mode).
//! - [`FaultProxy::drop_all`]: close every open connection; new connections are accepted and
//!   closed at once (a peer that refuses, as fast as a reset).
//! - [`FaultProxy::black_hole`]: keep connections open but move no byte in either direction. The
//!   proxy stops reading, so TCP backpressure builds on the sender as on a dead link; bytes it had
//!   read but not yet written stay with it. New connections are accepted and held, never forwarded
//!   (the peer thinks it connected; nothing answers).
//! - [`FaultProxy::restore`]: back to pass. Black-holed connections resume with their buffered
//!   bytes, in order; connections accepted during the black hole are forwarded now.
//! - [`FaultProxy::cut`]: close every open connection but keep accepting (a connection reset).
//! - [`FaultProxy::tear`]: cut in the middle of a message: of the next bytes the target sends,
//!   only the first half is delivered, then every connection closes (a stream broken mid-event).
//! - [`FaultProxy::throttle`]: at most so many bytes a second per connection and direction (a slow
//!   link, so a test can act while a transfer is under way).
//!
//! Workers advertise the proxy's URL (`--advertise`) so that the coordinator's link to them goes
//! through it: [`add_proxied_worker`].
//!
//! Each connection is two pumps (one per direction) that read and write only while the mode is
//! pass. A mode change interrupts a pending read (tokio's reads are cancel-safe: no byte is lost)
//! or a pending write (partial writes are counted, the rest is written after a restore). A drop
//! bumps an epoch: every connection of an older epoch closes both its sockets.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{TestCluster, WorkerSpec};

/// What the proxy does with bytes and connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Pass,
    Drop,
    BlackHole,
}

#[derive(Debug, Clone, Copy)]
struct State {
    mode: ProxyMode,
    /// Bumped by every drop or cut: connections of an older epoch close.
    epoch: u64,
}

/// Counters of what went through the proxy.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Connections accepted (refused ones included).
    pub accepted: AtomicU64,
    /// Connections accepted and closed at once because the proxy dropped everything.
    pub refused: AtomicU64,
    /// Connections to the target made.
    pub forwarded: AtomicU64,
    /// Connections open now (accepted, not yet closed).
    pub open: AtomicU64,
    /// Bytes written to either side.
    pub bytes: AtomicU64,
    /// Tears done (see [`FaultProxy::tear`]).
    pub torn: AtomicU64,
}

/// What the proxy's tasks share.
#[derive(Debug)]
struct Shared {
    state: watch::Sender<State>,
    target: Mutex<Option<SocketAddr>>,
    stats: ProxyStats,
    /// The next chunk from the target is torn.
    tear: AtomicBool,
    /// Bytes a second per connection and direction; 0: as fast as they come.
    rate: AtomicU64,
}

impl Shared {
    fn cut(&self) {
        self.state.send_modify(|state| {
            state.epoch += 1;
            if state.mode == ProxyMode::Drop {
                state.mode = ProxyMode::Pass;
            }
        });
    }
}

/// A running proxy; stops (closing every connection) when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy on a free loopback port, forwarding to `target`.
    pub async fn start(target: SocketAddr) -> FaultProxy {
        let proxy = FaultProxy::unconnected().await;
        proxy.set_target(target);
        proxy
    }

    /// A proxy on a free loopback port with no target yet: until [`FaultProxy::set_target`],
    /// connections are accepted and closed.
    pub async fn unconnected() -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (state, _) = watch::channel(State {
            mode: ProxyMode::Pass,
            epoch: 0,
        });
        let shared = Arc::new(Shared {
            state,
            target: Mutex::new(None),
            stats: ProxyStats::default(),
            tear: AtomicBool::new(false),
            rate: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        FaultProxy {
            addr,
            shared,
            accept,
        }
    }

    /// At most `bytes_per_second` per connection and direction from now on (0: no limit).
    pub fn throttle(&self, bytes_per_second: u64) {
        self.shared.rate.store(bytes_per_second, Ordering::SeqCst);
    }

    /// Where new connections are forwarded.
    pub fn set_target(&self, target: SocketAddr) {
        *self
            .shared
            .target
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(target);
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port>`, for `--advertise`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn mode(&self) -> ProxyMode {
        self.shared.state.borrow().mode
    }

    pub fn stats(&self) -> &ProxyStats {
        &self.shared.stats
    }

    /// Bytes written to either side so far.
    pub fn bytes(&self) -> u64 {
        self.shared.stats.bytes.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> u64 {
        self.shared.stats.open.load(Ordering::SeqCst)
    }

    /// Forwards again; black-holed connections resume.
    pub fn restore(&self) {
        self.shared
            .state
            .send_modify(|state| state.mode = ProxyMode::Pass);
    }

    /// Alias of [`FaultProxy::restore`].
    pub fn pass(&self) {
        self.restore();
    }

    /// Closes every open connection and refuses new ones until restored.
    pub fn drop_all(&self) {
        self.shared.state.send_modify(|state| {
            state.mode = ProxyMode::Drop;
            state.epoch += 1;
        });
    }

    /// Stops moving bytes; connections stay open; new ones are held.
    pub fn black_hole(&self) {
        self.shared
            .state
            .send_modify(|state| state.mode = ProxyMode::BlackHole);
    }

    /// Closes every open connection; new ones are forwarded (the mode is left as it was, unless it
    /// was drop).
    pub fn cut(&self) {
        self.shared.cut();
    }

    /// Tears the next bytes the target sends (on any connection, within `within`): the first half
    /// of the chunk read is delivered, then every connection closes, as [`FaultProxy::cut`]. On a
    /// gRPC stream that is a message broken in the middle. Returns false when no byte came from
    /// the target within `within` (nothing is torn then).
    pub async fn tear(&self, within: Duration) -> bool {
        let before = self.shared.stats.torn.load(Ordering::SeqCst);
        self.shared.tear.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if self.shared.stats.torn.load(Ordering::SeqCst) > before {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Too late: whichever wins, the flag is cleared.
        let cleared = self.shared.tear.swap(false, Ordering::SeqCst);
        !cleared || self.shared.stats.torn.load(Ordering::SeqCst) > before
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Every connection closes: their receivers see the drop.
        self.shared.state.send_modify(|state| {
            state.mode = ProxyMode::Drop;
            state.epoch += 1;
        });
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors or the like: try again shortly rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let stats = &shared.stats;
        stats.accepted.fetch_add(1, Ordering::SeqCst);
        let now = *shared.state.borrow();
        if now.mode == ProxyMode::Drop {
            stats.refused.fetch_add(1, Ordering::SeqCst);
            drop(client);
            continue;
        }
        let rx = shared.state.subscribe();
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            shared.stats.open.fetch_add(1, Ordering::SeqCst);
            connection(client, rx, now.epoch, &shared).await;
            shared.stats.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Waits until the mode is pass; false when the connection must close instead (a drop, a cut,
/// the proxy gone).
async fn wait_pass(rx: &mut watch::Receiver<State>, epoch: u64) -> bool {
    loop {
        let state = *rx.borrow_and_update();
        if state.epoch != epoch || state.mode == ProxyMode::Drop {
            return false;
        }
        if state.mode == ProxyMode::Pass {
            return true;
        }
        if rx.changed().await.is_err() {
            return false;
        }
    }
}

/// Resolves when the connection of `epoch` must close.
async fn closing(rx: &mut watch::Receiver<State>, epoch: u64) {
    loop {
        let state = *rx.borrow_and_update();
        if state.epoch != epoch || state.mode == ProxyMode::Drop {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn connection(
    client: TcpStream,
    mut rx: watch::Receiver<State>,
    epoch: u64,
    shared: &Shared,
) {
    // A black-holed proxy holds new connections here: accepted, never forwarded until restored.
    if !wait_pass(&mut rx, epoch).await {
        return;
    }
    let Some(target) = *shared.target.lock().unwrap_or_else(PoisonError::into_inner) else {
        return;
    };
    let server = tokio::select! {
        server = TcpStream::connect(target) => match server {
            Ok(server) => server,
            Err(_) => return,
        },
        () = closing(&mut rx, epoch) => return,
    };
    shared.stats.forwarded.fetch_add(1, Ordering::SeqCst);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, rx.clone(), epoch, shared, false);
    let down = pump(server_read, client_write, rx.clone(), epoch, shared, true);
    // A direction that ends with an end of file half-closes and lets the other go on; an error or
    // a drop ends both.
    tokio::pin!(up, down);
    let mut up_done = false;
    let mut down_done = false;
    while !(up_done && down_done) {
        tokio::select! {
            ended = &mut up, if !up_done => {
                up_done = true;
                if ended.is_err() { return; }
            }
            ended = &mut down, if !down_done => {
                down_done = true;
                if ended.is_err() { return; }
            }
        }
    }
}

/// Why a pump stopped early.
#[derive(Debug)]
struct Closed;

/// Moves bytes from `from` to `to` while the mode is pass. `Ok` after an end of file (passed on
/// as a half-close); `Err` when the connection must close (error, drop, cut). `from_target`: the
/// direction a tear applies to.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut rx: watch::Receiver<State>,
    epoch: u64,
    shared: &Shared,
    from_target: bool,
) -> Result<(), Closed> {
    let stats = &shared.stats;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        if !wait_pass(&mut rx, epoch).await {
            return Err(Closed);
        }
        let read = tokio::select! {
            read = from.read(&mut buf) => read.map_err(|_| Closed)?,
            // The mode changed: look again before reading (a black hole stops reading).
            changed = rx.changed() => {
                if changed.is_err() { return Err(Closed); }
                continue;
            }
        };
        if read == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        let mut read = read;
        let mut tearing = false;
        if from_target && read > 1 && shared.tear.swap(false, Ordering::SeqCst) {
            read /= 2;
            tearing = true;
        }
        let mut written = 0;
        while written < read {
            if !wait_pass(&mut rx, epoch).await {
                return Err(Closed);
            }
            tokio::select! {
                wrote = to.write(&buf[written..read]) => {
                    let wrote = wrote.map_err(|_| Closed)?;
                    if wrote == 0 { return Err(Closed); }
                    written += wrote;
                    stats.bytes.fetch_add(wrote as u64, Ordering::SeqCst);
                    let rate = shared.rate.load(Ordering::SeqCst);
                    if rate > 0 {
                        tokio::time::sleep(Duration::from_secs_f64(wrote as f64 / rate as f64)).await;
                    }
                }
                changed = rx.changed() => {
                    if changed.is_err() { return Err(Closed); }
                }
            }
        }
        if tearing {
            let _ = to.flush().await;
            stats.torn.fetch_add(1, Ordering::SeqCst);
            shared.cut();
            return Err(Closed);
        }
    }
}

/// Starts a worker of `cluster` that advertises a fault proxy's URL, so that the coordinator's
/// link to it goes through the proxy; returns the worker's index and its proxy. The worker still
/// registers with the coordinator directly. Call [`TestCluster::wait_ready_nodes`] afterwards.
pub async fn add_proxied_worker(
    cluster: &mut TestCluster,
    mut spec: WorkerSpec,
) -> (usize, FaultProxy) {
    let proxy = FaultProxy::unconnected().await;
    spec.extra_args.push("--advertise".into());
    spec.extra_args.push(proxy.url());
    let index = cluster.add_worker(spec);
    let port = cluster.workers[index].port;
    proxy.set_target(SocketAddr::from(([127, 0, 0, 1], port)));
    (index, proxy)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server; counts the connections it accepted.
    async fn echo_server() -> (SocketAddr, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        (addr, accepted)
    }

    async fn round_trip(stream: &mut TcpStream, data: &[u8]) -> Vec<u8> {
        stream.write_all(data).await.unwrap();
        let mut back = vec![0u8; data.len()];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut back))
            .await
            .expect("echo within 5 s")
            .unwrap();
        back
    }

    /// Reads with a deadline: `None` when nothing came within `wait`.
    async fn read_within(stream: &mut TcpStream, wait: Duration) -> Option<std::io::Result<usize>> {
        let mut buf = [0u8; 1024];
        tokio::time::timeout(wait, stream.read(&mut buf)).await.ok()
    }

    async fn eventually(what: &str, check: impl Fn() -> bool) {
        for _ in 0..200 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("not within 2 s: {what}");
    }

    #[tokio::test]
    async fn passes_bytes_both_ways() {
        let (target, _) = echo_server().await;
        let proxy = FaultProxy::start(target).await;
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"hello").await, b"hello");
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(round_trip(&mut stream, &big).await, big);
        assert_eq!(proxy.bytes(), 2 * (5 + big.len() as u64));
        assert_eq!(proxy.mode(), ProxyMode::Pass);
    }

    #[tokio::test]
    async fn drop_closes_open_connections_and_refuses_new_ones_until_restored() {
        let (target, accepted) = echo_server().await;
        let proxy = FaultProxy::start(target).await;
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut open, b"x").await, b"x");

        proxy.drop_all();
        match read_within(&mut open, Duration::from_secs(2)).await {
            Some(Ok(0) | Err(_)) => {}
            other => panic!("the open connection is closed by a drop: {other:?}"),
        }
        eventually("the connection is counted closed", || {
            proxy.open_connections() == 0
        })
        .await;

        // A new connection is accepted (connect succeeds) and closed at once, never forwarded.
        let mut refused = TcpStream::connect(proxy.addr()).await.unwrap();
        let _ = refused.write_all(b"y").await;
        match read_within(&mut refused, Duration::from_secs(2)).await {
            Some(Ok(0) | Err(_)) => {}
            other => panic!("a new connection is closed while dropping: {other:?}"),
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "nothing reached the target"
        );
        assert!(proxy.stats().refused.load(Ordering::SeqCst) >= 1);

        proxy.restore();
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut again, b"z").await, b"z");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn black_hole_holds_bytes_and_connections_until_restored() {
        let (target, accepted) = echo_server().await;
        let proxy = FaultProxy::start(target).await;
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut open, b"before").await, b"before");

        proxy.black_hole();
        open.write_all(b"during").await.unwrap();
        assert!(
            read_within(&mut open, Duration::from_millis(500))
                .await
                .is_none(),
            "no byte moves and the connection stays open"
        );
        // New connections are accepted and held: connect succeeds, nothing reaches the target.
        let mut held = TcpStream::connect(proxy.addr()).await.unwrap();
        held.write_all(b"held").await.unwrap();
        assert!(
            read_within(&mut held, Duration::from_millis(300))
                .await
                .is_none()
        );
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "a held connection is not forwarded"
        );

        proxy.restore();
        let mut back = [0u8; 6];
        tokio::time::timeout(Duration::from_secs(5), open.read_exact(&mut back))
            .await
            .expect("the buffered bytes move after a restore")
            .unwrap();
        assert_eq!(&back, b"during");
        let mut back = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), held.read_exact(&mut back))
            .await
            .expect("the held connection is forwarded after a restore")
            .unwrap();
        assert_eq!(&back, b"held");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn black_hole_builds_backpressure_and_loses_nothing() {
        let (target, _) = echo_server().await;
        let proxy = FaultProxy::start(target).await;
        let stream = TcpStream::connect(proxy.addr()).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        proxy.black_hole();
        // Far more than the kernel's buffers on loopback: the writer must block.
        const TOTAL: usize = 64 * 1024 * 1024;
        let data: Vec<u8> = (0..TOTAL).map(|i| (i % 253) as u8).collect();
        let expected = data.clone();
        let writer = tokio::spawn(async move {
            write.write_all(&data).await.unwrap();
            write
        });
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; TOTAL];
            read.read_exact(&mut got).await.unwrap();
            got
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !writer.is_finished(),
            "the writer is held back by TCP backpressure"
        );
        assert!(!reader.is_finished());
        let moved = proxy.bytes();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(proxy.bytes(), moved, "no byte moves in a black hole");

        proxy.restore();
        let got = tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .expect("everything arrives after a restore")
            .unwrap();
        assert!(got == expected, "the bytes arrive complete and in order");
        let _write = writer.await.unwrap();
    }

    #[tokio::test]
    async fn cut_closes_open_connections_and_keeps_accepting() {
        let (target, _) = echo_server().await;
        let proxy = FaultProxy::start(target).await;
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut open, b"a").await, b"a");
        proxy.cut();
        match read_within(&mut open, Duration::from_secs(2)).await {
            Some(Ok(0) | Err(_)) => {}
            other => panic!("a cut closes the connection: {other:?}"),
        }
        let mut next = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut next, b"b").await, b"b");
        assert_eq!(proxy.mode(), ProxyMode::Pass);
    }

    #[tokio::test]
    async fn tear_delivers_half_of_a_chunk_then_closes() {
        let (target, _) = echo_server().await;
        let proxy = FaultProxy::start(target).await;
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut open, b"a").await, b"a");
        let tear = proxy.tear(Duration::from_secs(5));
        let message = [7u8; 1000];
        let write = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            open.write_all(&message).await.unwrap();
            let mut got = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), open.read_to_end(&mut got)).await;
            got
        };
        let (torn, got) = tokio::join!(tear, write);
        assert!(torn, "the next chunk from the target was torn");
        assert!(
            !got.is_empty() && got.len() < message.len(),
            "part of the message, then the end: {} bytes",
            got.len()
        );
        assert_eq!(proxy.stats().torn.load(Ordering::SeqCst), 1);
        // New connections pass.
        let mut next = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut next, b"b").await, b"b");
        // Nothing flowing: nothing torn.
        assert!(!proxy.tear(Duration::from_millis(200)).await);
        assert_eq!(round_trip(&mut next, b"c").await, b"c");
    }

    #[tokio::test]
    async fn without_a_target_or_with_a_dead_one_connections_close() {
        let proxy = FaultProxy::unconnected().await;
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        match read_within(&mut stream, Duration::from_secs(2)).await {
            Some(Ok(0) | Err(_)) => {}
            other => panic!("no target: closed: {other:?}"),
        }
        // A target that refuses: the proxy closes the client's connection too.
        let dead = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        proxy.set_target(dead);
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        match read_within(&mut stream, Duration::from_secs(2)).await {
            Some(Ok(0) | Err(_)) => {}
            other => panic!("dead target: closed: {other:?}"),
        }
    }

    #[tokio::test]
    async fn dropping_the_proxy_closes_its_connections() {
        let (target, _) = echo_server().await;
        let proxy = FaultProxy::start(target).await;
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut open, b"a").await, b"a");
        drop(proxy);
        match read_within(&mut open, Duration::from_secs(2)).await {
            Some(Ok(0) | Err(_)) => {}
            other => panic!("closed with the proxy: {other:?}"),
        }
    }
}
