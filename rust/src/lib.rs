//! rtrec's native core: feature hashing, the replay ring buffer, co-visitation, pending
//! impressions, per-user item sets, the parsing of posted event batches, and the CTR model's
//! scoring pass.
//!
//! The modules other than `python` are plain Rust with no Python dependency and are
//! tested with `cargo test`. `python` (behind the `python` feature, which maturin turns on)
//! holds every PyO3 binding and the mapping of [`error::Error`] onto `rtrec.errors`.

pub mod covisit;
pub mod error;
pub mod events;
pub mod hash;
pub mod itemsets;
pub mod linear;
pub mod pending;
pub mod ring;
pub mod rng;
pub mod score;

#[cfg(feature = "python")]
mod python;
