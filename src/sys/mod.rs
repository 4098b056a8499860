//! The only place that talks to the operating system: [`unix`] is `OsKernel`, and
//! [`sync`] pairs a kernel [`Monitor`](crate::kernel::Monitor) with the data it guards.
//! Every `unsafe` block of the crate lives under this module.

pub(crate) mod sync;
#[cfg(unix)]
pub(crate) mod unix;
