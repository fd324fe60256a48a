//! The machine (2 cores) shared by the tests of one binary, which run in parallel: a test
//! that needs it to itself (several JVMs, or a run whose chaos depends on timing) takes
//! [`alone`]; every other test that starts real components takes [`shared`], so that none of
//! them runs beside one that is alone. Before the tests were merged into one binary, such a
//! test was the only one of its binary and binaries ran one after another.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static MACHINE: RwLock<()> = RwLock::new(());

/// Held for the whole test: no other test that holds [`shared`] or [`alone`] runs meanwhile.
pub fn alone() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(|e| e.into_inner())
}

/// Held for the whole test: runs beside other shared ones, never beside one that is [`alone`].
pub fn shared() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(|e| e.into_inner())
}
