//! A TCP proxy on loopback for tests that move a client between servers: it forwards each connection
//! to the current target, can be pointed at another target, and can cut every open connection (as a
//! network failure does: no close frame).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards `127.0.0.1:<port>` to a target; stops (and cuts everything) on drop.
pub struct Proxy {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    open: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// A proxy to `target`, listening on a free loopback port.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("an address");
        let target = Arc::new(Mutex::new(target));
        let open: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (target, open) = (target.clone(), open.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let to = *target.lock().expect("target lock");
                    let forward = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(to).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    open.lock().expect("open lock").push(forward);
                }
            }
        });
        Proxy {
            addr,
            target,
            open,
            accept,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// New connections go to `target` from now on.
    pub fn switch(&self, target: SocketAddr) {
        *self.target.lock().expect("target lock") = target;
    }

    /// Drop every open connection at once, both ways.
    pub fn cut(&self) {
        for forward in self.open.lock().expect("open lock").drain(..) {
            forward.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
