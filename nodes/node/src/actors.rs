//! The node's actors: one per queue, one per logged-in informant, and a
//! supervisor above them.
//!
//! Actors own the routing state machines of `relais-routing` and carry out
//! the effects those machines return. Rule that keeps them deadlock-free:
//! a queue never waits for an informant (it only casts to informants); an
//! informant may wait for a queue (to connect an accepted offer).
//!
//! Mailboxes are ractor's, which do not bound themselves; their depth is
//! bounded by admission instead: requests come only from the gRPC server,
//! whose in-flight requests per connection are limited, and every actor
//! message is answered or dropped without producing more than a bounded
//! number of others.

pub mod informant;
pub mod queue;
pub mod supervisor;
