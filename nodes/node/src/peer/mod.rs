//! The nodes' internal service (`relais.peer.v1`): how actor messages cross
//! from one node to another.
//!
//! - `wire` converts between the actors' messages and the wire's envelope
//!   bodies; it is pure and knows nothing of links.

pub mod wire;
