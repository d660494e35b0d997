//! What an idle connection costs: its task holds the connection future, so the future's size
//! is checked here (tokio aligns a task to 128 bytes, so a few bytes more can cost 128).

use std::sync::Arc;
use std::time::Duration;

use switchyard_broker::{AnonymousAuth, Broker, BrokerConfig};
use switchyard_storage::NullStore;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn the_connection_future_stays_small() {
    let auth = AnonymousAuth { allow_anonymous: true, deny: vec![] };
    let stop = CancellationToken::new();
    let (broker, _router) =
        Broker::start(BrokerConfig::default(), Arc::new(NullStore), Arc::new(auth), stop.clone()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stream = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let permit = Arc::new(tokio::sync::Semaphore::new(1)).try_acquire_owned().unwrap();
    let future =
        super::serve_holding(stream, None, None, broker, Duration::from_secs(1), CancellationToken::new(), permit);
    let size = size_of_val(&future);
    // 344 bytes today: with tokio's task header and trailer the task is 512 bytes; 40 more
    // would make every idle connection's task 640.
    assert!(size <= 360, "the connection future grew to {size} bytes");
    stop.cancel();
}
