//! Process isolation: the built-in OCI runtime, the per-container monitor and external handlers.
//!
//! Speaks the OCI runtime-spec at its edge (a bundle in, a monitored process out) and knows nothing of the CRI.
