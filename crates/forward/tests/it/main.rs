//! The forwarding crate's integration tests: the sink task against a scripted sink (`runner`)
//! and the JetStream sink against real `nats-server` processes (`jetstream`).

mod jetstream;
mod runner;
