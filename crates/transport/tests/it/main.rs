//! End-to-end tests of the broker over real sockets: bad input, flow control, slow consumers,
//! persistence across restarts, graceful shutdown, topic depth and retained limits.

mod bad_input;
mod durability;
mod flow;
mod harness;
mod identity;
mod lifecycle;
mod tls;
mod topics;
mod window;
