//! End-to-end tests of the broker over real sockets: bad input, flow control, slow consumers,
//! persistence across restarts, graceful shutdown, and the order of packets from different
//! connections.

mod bad_input;
mod flow;
mod harness;
mod identity;
mod lifecycle;
mod order;
mod tls;
