//! Operator commands that talk to a running daemon over its socket.

pub mod image;
