//! Topology helpers for namespace tests.
