//! Pod networking: a CNI-spec client and Berth's own CNI plugins.
//!
//! Speaks the CNI spec at its edge (plugins as executables, JSON on stdin/stdout) and knows nothing of the CRI.
