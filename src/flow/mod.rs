//! Use cases, platform-neutral: file a request, decide it, build what approvers see.
//! Chat handlers parse and call these; each change is one store transaction.

pub mod cards;
pub mod conversations;
pub mod decide;
pub mod digest;
pub mod fulfilment;
pub mod intake;
pub mod lifecycle;
pub mod requests;
pub mod reviews;
pub mod tickets;

use crate::store::StoreError;

/// A use case failed for a reason that is ours, not the user's (logged; the user is told to retry).
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error(transparent)]
    Store(#[from] StoreError),
}
