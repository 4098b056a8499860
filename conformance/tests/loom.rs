//! The loom models of `loopwatch_conformance::loom_models`: each scenario explored by
//! loom over the simulator, every run judged by the invariant checker; and each model
//! that names a mutant, run with the mutant on, must fail. Empty unless built with
//! `--cfg loom` (the README's "Model checking with loom").
#![cfg(loom)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use loopwatch::zoo::Mutant;
use loopwatch_conformance::explore::{Run, SeedOutcome};
use loopwatch_conformance::loom_models::{LoomModel, MODELS};

/// Explores `model` (with `mutant` on); panics at the first execution that breaks an
/// invariant or does not complete. Prints the executions explored and the time taken.
#[allow(
    clippy::disallowed_methods,
    reason = "the model's wall time, for its report line"
)]
fn explore(model: &'static LoomModel, mutant: Option<Mutant>) {
    let scenario = model.scenario().expect("the model's scenario parses");
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(Some(model.preemptions));
    // A run makes hundreds of kernel calls, each a branch point.
    builder.max_branches = builder.max_branches.max(200_000);
    let executions = Arc::new(AtomicUsize::new(0));
    let counted = executions.clone();
    let started = Instant::now();
    builder.check(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        let run = Run {
            scenario: &scenario,
            watcher: model.watcher,
            seed: 0,
            faults: model.faults,
            mutant,
            keep_trace: false,
        };
        let checked = run.checked();
        let complete = matches!(checked.outcome, SeedOutcome::Trace(_));
        assert!(
            complete && checked.breaches.is_empty(),
            "loom model {} ({}): {:?}, breaches {:?}\nreplay: {}",
            model.name,
            model.watcher.as_str(),
            checked.outcome,
            checked.breaches,
            match mutant {
                Some(_) => model.zoo_command().unwrap_or_else(|| model.command()),
                None => model.command(),
            },
        );
    });
    eprintln!(
        "loom model {}{}: {} executions in {:.1} s (preemption bound {})",
        model.name,
        mutant
            .map(|m| format!(" with mutant {}", m.name()))
            .unwrap_or_default(),
        executions.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        builder.preemption_bound.unwrap_or(0),
    );
}

/// Runs `model` with its mutant on; says whether loom found a failing execution.
#[allow(
    clippy::disallowed_methods,
    reason = "the model's wall time, for its report line"
)]
fn catches(model: &'static LoomModel) -> bool {
    let mutant = model.catches.expect("the model names a mutant");
    let started = Instant::now();
    let failed = std::panic::catch_unwind(|| explore(model, Some(mutant))).is_err();
    eprintln!(
        "loom model {} {} mutant {} in {:.1} s",
        model.name,
        if failed { "caught" } else { "did not catch" },
        mutant.name(),
        started.elapsed().as_secs_f64()
    );
    failed
}

fn model(name: &str) -> &'static LoomModel {
    MODELS
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no loom model {name}"))
}

macro_rules! models {
    (explore: [$($name:ident),* $(,)?], catch: [$($caught:ident),* $(,)?] $(,)?) => {
        $(
            #[test]
            fn $name() {
                explore(model(stringify!($name)), None);
            }
        )*

        /// Each model that names a mutant, run with it on: loom must find a failing
        /// execution.
        mod zoo {
            use super::*;

            $(
                #[test]
                fn $caught() {
                    assert!(
                        catches(model(stringify!($caught))),
                        "loom model {} missed its mutant",
                        stringify!($caught)
                    );
                }
            )*
        }

        #[test]
        fn every_model_has_a_test() {
            let tested = [$(stringify!($name)),*];
            let caught = [$(stringify!($caught)),*];
            for model in MODELS {
                assert!(tested.contains(&model.name), "loom model {} has no test", model.name);
                assert_eq!(
                    caught.contains(&model.name),
                    model.catches.is_some(),
                    "loom model {}: its zoo test and its mutant disagree",
                    model.name
                );
            }
        }
    };
}

models!(
    explore: [
        threaded_exit_zero,
        threaded_waiter_against_remove_and_close,
        threaded_idle_waiter_takes_the_next_child,
        threaded_hop_wakes_a_sleeping_loop,
        safe_exit_races_registration,
        fast_exit_races_registration,
        safe_handler_table,
        fast_handler_table,
        pidfd_handler_table,
        multi_loop_handler_table,
        threaded_handler_table,
        multi_loop_two_loops_one_closing,
        multi_loop_overlapping_passes,
        pidfd_reaped_elsewhere,
        fast_reaped_elsewhere,
        safe_panicking_callback,
        fast_registration_from_another_thread,
    ],
    catch: [
        threaded_exit_zero,
        threaded_hop_wakes_a_sleeping_loop,
        safe_exit_races_registration,
        multi_loop_two_loops_one_closing,
        multi_loop_overlapping_passes,
        pidfd_reaped_elsewhere,
        fast_reaped_elsewhere,
        safe_panicking_callback,
        fast_registration_from_another_thread,
    ],
);
