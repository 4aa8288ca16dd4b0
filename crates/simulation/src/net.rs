//! tonic over turmoil's simulated TCP: servers accept from a turmoil listener, clients dial
//! through a tower connector that opens turmoil streams (the pattern of turmoil's gRPC
//! example, for tonic 0.14 and hyper 1).

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Channel, Endpoint, Uri};

/// Accepted connections waiting for the server, at most.
const ACCEPT_BACKLOG: usize = 16;

/// A simulated connection, as tonic's server needs it.
pub struct SimStream(turmoil::net::TcpStream);

impl Connected for SimStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        TcpConnectInfo {
            local_addr: self.0.local_addr().ok(),
            remote_addr: self.0.peer_addr().ok(),
        }
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The connections accepted on `port` of the current host, as a stream for
/// `service_kit::server::serve_incoming`. Must run inside a host.
pub async fn incoming(port: u16) -> io::Result<ReceiverStream<io::Result<SimStream>>> {
    let listener =
        turmoil::net::TcpListener::bind((IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)).await?;
    let (accepted, stream) = tokio::sync::mpsc::channel(ACCEPT_BACKLOG);
    tokio::spawn(async move {
        loop {
            let connection = listener.accept().await.map(|(s, _)| SimStream(s));
            if accepted.send(connection).await.is_err() {
                break;
            }
        }
    });
    Ok(ReceiverStream::new(stream))
}

/// Dials simulated hosts for tonic.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimConnector;

impl tower::Service<Uri> for SimConnector {
    type Response = TokioIo<turmoil::net::TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(async move {
            let authority = uri.authority().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("{uri} has no host"))
            })?;
            let stream = turmoil::net::TcpStream::connect(authority.as_str()).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// Connection settings of every simulated channel. The services' own channels use the
/// same kind of settings with longer periods (`service_kit::client::channel`); shorter
/// ones here let a connection broken by a partition be noticed within simulated seconds.
#[derive(Clone, Copy, Debug)]
pub struct ChannelSettings {
    pub connect_timeout: Duration,
    pub keep_alive_interval: Duration,
    pub keep_alive_timeout: Duration,
}

/// h2 forgets a stream it reset after this long, measured on the WALL clock (std's
/// `Instant`, which turmoil does not simulate): a frame that arrives later (a reply held
/// on a stalled link, say) is then answered differently, and the run would depend on how
/// fast the machine is. Longer than any run, it leaves only h2's count bound, which is
/// deterministic.
const RESET_STREAM_MEMORY: Duration = Duration::from_secs(24 * 60 * 60);

impl Default for ChannelSettings {
    fn default() -> Self {
        ChannelSettings {
            connect_timeout: Duration::from_millis(500),
            keep_alive_interval: Duration::from_millis(1_000),
            keep_alive_timeout: Duration::from_millis(1_000),
        }
    }
}

/// A lazily connected channel to `host:port` over the simulated network. Must be made
/// inside a host (the channel spawns its worker there).
pub fn channel(host: &str, port: u16, settings: ChannelSettings) -> Channel {
    Endpoint::from_shared(format!("http://{host}:{port}"))
        .expect("a host name and port make a valid URI")
        .connect_timeout(settings.connect_timeout)
        .http2_keep_alive_interval(settings.keep_alive_interval)
        .keep_alive_timeout(settings.keep_alive_timeout)
        .keep_alive_while_idle(true)
        .http2_reset_stream_duration(RESET_STREAM_MEMORY)
        .connect_with_connector_lazy(SimConnector)
}
