//! The words grantry speaks: requests, grants, people, the catalog, durations.
//!
//! Invariant: nothing in `domain` performs I/O or depends on another module of ours.

pub mod catalog;
pub mod duration;
pub mod grant;
pub mod ids;
pub mod person;
pub mod request;

pub use catalog::{App, Catalog, CatalogError, Entitlement, Risk, Step, BUNDLE_APP};
pub use duration::AccessDuration;
pub use grant::{GrantId, GrantState};
pub use ids::RequestId;
pub use person::{Person, PersonStatus};
pub use request::{reason_problem, ticket_problem, AccessRequest, RequestState};
