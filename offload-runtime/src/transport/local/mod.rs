//! The local transport: one `attempt` at a call on a pool of worker processes (`pool`), each a copy
//! of this program started by `spawn`, a call's bytes going through the caller's end of its channel
//! (`conn`), queued calls sent along with a lease's own (`batch`), long calls placed on cores of
//! their own (`placement`).

pub(crate) mod attempt;
pub(crate) mod batch;
pub(crate) mod builder;
pub(crate) mod conn;
pub(crate) mod placement;
pub(crate) mod pool;
pub(crate) mod spawn;
