//! The server functions' HTTP client: the browser's `fetch` (Leptos's
//! own client) with `X-Socket-ID` set to this tab's socket, so the hub
//! spares this tab the echo of what it just did (Laravel's `toOthers()`),
//! and `X-Tab-ID`, which does the same for the polling path.
//! Server functions name it with `#[server(client = SocketClient)]`.

use leptos::server_fn::{
    client::{browser::BrowserClient, Client},
    error::FromServerFnError,
    request::browser::BrowserRequest,
    response::browser::BrowserResponse,
    Bytes,
};
use std::future::Future;

/// The header the hub reads (`X-Socket-ID`, as Laravel Echo sends it).
pub const SOCKET_ID_HEADER: &str = "X-Socket-ID";
pub use lockstep_wire::channel::TAB_ID_HEADER;

pub struct SocketClient;

impl<E, IS, OS> Client<E, IS, OS> for SocketClient
where
    E: FromServerFnError,
    IS: FromServerFnError,
    OS: FromServerFnError,
{
    type Request = BrowserRequest;
    type Response = BrowserResponse;

    fn send(req: Self::Request) -> impl Future<Output = Result<Self::Response, E>> + Send {
        #[cfg(feature = "hydrate")]
        {
            if let Some(id) = super::driver::socket_id() {
                req.headers().set(SOCKET_ID_HEADER, &id);
            }
            req.headers().set(TAB_ID_HEADER, &super::driver::tab_id());
        }
        <BrowserClient as Client<E, IS, OS>>::send(req)
    }

    #[allow(clippy::type_complexity)]
    fn open_websocket(
        path: &str,
    ) -> impl Future<
        Output = Result<
            (
                impl futures::Stream<Item = Result<Bytes, Bytes>> + Send + 'static,
                impl futures::Sink<Bytes> + Send + 'static,
            ),
            E,
        >,
    > + Send {
        <BrowserClient as Client<E, IS, OS>>::open_websocket(path)
    }

    fn spawn(future: impl Future<Output = ()> + Send + 'static) {
        <BrowserClient as Client<E, IS, OS>>::spawn(future)
    }
}
