//! End-to-end tests of the broker over real sockets: bad input, flow control, slow consumers,
//! persistence across restarts, graceful shutdown, topic depth and retained limits, durability
//! on storage failure, the inbound window, and the order of packets from different connections.

mod bad_input;
mod durability;
mod flow;
mod harness;
mod identity;
mod lifecycle;
mod order;
mod pipeline;
mod tls;
mod topics;
mod window;
