//! End-to-end harness: a real `berth serve`, a real registry, the CRI client.
