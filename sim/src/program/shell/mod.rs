//! The simulator's `sh -c`: a lexer for the subset of the shell language the module
//! documentation lists, and a run of the script's commands that ends in a
//! [`ChildPlan`](super::ChildPlan). Whatever is outside the subset, or where dash and
//! bash would not agree, is refused with an [`Unmodelled`](super::Unmodelled) naming
//! it.

mod builtins;
mod parse;
mod run;
#[cfg(test)]
mod tests;

pub(super) use run::Shell;
