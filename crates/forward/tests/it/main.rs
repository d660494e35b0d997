//! The forwarding crate's integration tests: the sink task against a scripted sink (`runner`)
//! the JetStream sink against real `nats-server` processes (`jetstream`), and both sinks over
//! TLS to receivers whose certificate only a `ca_file` vouches for (`tls`).

mod jetstream;
mod runner;
mod tls;
