//! Children running their plans: which child has something to do now (an exit that
//! is due, output to write, input to copy), and one step of it. The driver decides
//! when a child steps.

use loopwatch::kernel::{ExitStatus, Pid};

use super::{Model, PIPE_CAPACITY, Proc, ProcState};
use crate::program::ChildPlan;

impl Model {
    /// Child events that may happen now: exits that are due, output to write, input
    /// to copy. Returns the pids with something to do, oldest first.
    pub(crate) fn due_children(&self) -> Vec<Pid> {
        let mut due: Vec<(u64, Pid)> = self
            .procs
            .iter()
            .filter(|(_, p)| matches!(p.state, ProcState::Running))
            .filter(|(pid, p)| self.child_can_progress(**pid, p))
            .map(|(&pid, p)| (p.seq, pid))
            .collect();
        due.sort();
        due.into_iter().map(|(_, pid)| pid).collect()
    }

    fn child_can_progress(&self, _pid: Pid, proc: &Proc) -> bool {
        // Not running yet (the lag fault), or stopped.
        if proc.stopped || self.time < proc.started {
            return false;
        }
        if !proc.signals.is_empty() {
            return true;
        }
        match &proc.plan {
            ChildPlan::Exit { after, .. } | ChildPlan::Killed { after, .. } => {
                self.time >= proc.started + *after || self.output_pending(proc)
            }
            ChildPlan::Forever => false,
            ChildPlan::ReadLine { .. } => {
                if !Self::output_done(proc) {
                    return self.output_pending(proc);
                }
                // A byte to read, or end of file.
                proc.stdin
                    .and_then(|id| self.pipes.get(&id))
                    .is_none_or(|pipe| !pipe.buf.is_empty() || pipe.writers == 0)
            }
            ChildPlan::Cat => {
                let input = proc.stdin.and_then(|id| self.pipes.get(&id));
                match input {
                    None => true,
                    Some(pipe) if pipe.buf.is_empty() => pipe.writers == 0,
                    Some(_) => proc
                        .stdout
                        .and_then(|id| self.pipes.get(&id))
                        .is_none_or(|out| out.buf.len() < PIPE_CAPACITY || out.readers == 0),
                }
            }
        }
    }

    /// The pipes the child's stdout and stderr go to, if they are pipes.
    fn output_pipes(proc: &Proc) -> [Option<u64>; 2] {
        [proc.stdout, proc.stderr]
    }

    fn output_pending(&self, proc: &Proc) -> bool {
        let output = proc.plan.output();
        (0..2).any(|stream| {
            proc.written[stream] < output[stream].len()
                && Self::output_pipes(proc)[stream]
                    .and_then(|id| self.pipes.get(&id))
                    .is_some_and(|p| p.buf.len() < PIPE_CAPACITY)
        })
    }

    /// Whether the plan's stdout and stderr are all written (or go to no pipe).
    fn output_done(proc: &Proc) -> bool {
        let output = proc.plan.output();
        (0..2).all(|stream| {
            proc.written[stream] >= output[stream].len()
                || Self::output_pipes(proc)[stream].is_none()
        })
    }

    /// Writes what the plan's stdout and stderr still have to their pipes, as room
    /// allows.
    pub(super) fn child_output(&mut self, pid: Pid) {
        for stream in 0..2 {
            let Some(proc) = self.procs.get_mut(&pid) else {
                return;
            };
            let bytes = proc.plan.output()[stream];
            let Some(pipe) =
                Self::output_pipes(proc)[stream].and_then(|id| self.pipes.get_mut(&id))
            else {
                continue;
            };
            if proc.written[stream] >= bytes.len() {
                continue;
            }
            if pipe.readers == 0 {
                proc.written[stream] = bytes.len();
                continue;
            }
            let room = PIPE_CAPACITY - pipe.buf.len();
            let n = room.min(bytes.len() - proc.written[stream]);
            let start = proc.written[stream];
            pipe.buf.extend(&bytes[start..start + n]);
            self.stamps += 1;
            pipe.stamp = self.stamps;
            proc.written[stream] += n;
            self.changed = true;
        }
    }

    /// Lets one child make progress (the driver decides when).
    pub(crate) fn step_child(&mut self, pid: Pid) {
        let Some(proc) = self.procs.get(&pid) else {
            return;
        };
        if !proc.signals.is_empty() {
            self.child_takes_signals(pid);
            return;
        }
        let (started, plan) = (proc.started, proc.plan.clone());
        match plan {
            ChildPlan::Exit { code, after, .. } => {
                self.child_output(pid);
                if self.time >= started + after && Self::output_done(&self.procs[&pid]) {
                    self.terminate(pid, ExitStatus::from_exit_code(code));
                }
            }
            ChildPlan::Killed { signal, after, .. } => {
                self.child_output(pid);
                if self.time >= started + after && Self::output_done(&self.procs[&pid]) {
                    self.kill_self(pid, signal);
                }
            }
            ChildPlan::Forever => {}
            ChildPlan::ReadLine { code, .. } => {
                self.child_output(pid);
                if !Self::output_done(&self.procs[&pid]) {
                    return;
                }
                let input = self.procs[&pid].stdin;
                let Some(pipe) = input.and_then(|id| self.pipes.get_mut(&id)) else {
                    // Not a pipe: end of file at once.
                    self.terminate(pid, ExitStatus::from_exit_code(code.unwrap_or(1)));
                    return;
                };
                if let Some(newline) = pipe.buf.iter().position(|&b| b == b'\n') {
                    // The shell reads byte by byte: what follows the line stays.
                    pipe.buf.drain(..=newline);
                    self.changed = true;
                    self.terminate(pid, ExitStatus::from_exit_code(code.unwrap_or(0)));
                } else if !pipe.buf.is_empty() {
                    // Part of a line: read it and wait for the rest.
                    pipe.buf.clear();
                    self.changed = true;
                    self.log_event(format_args!("child {pid} reads input"));
                } else if pipe.writers == 0 {
                    self.terminate(pid, ExitStatus::from_exit_code(code.unwrap_or(1)));
                }
            }
            ChildPlan::Cat => {
                let proc = &self.procs[&pid];
                let (input, output) = (proc.stdin, proc.stdout);
                let eof = input
                    .and_then(|id| self.pipes.get(&id))
                    .is_none_or(|pipe| pipe.buf.is_empty() && pipe.writers == 0);
                let data: Vec<u8> = match eof {
                    true => {
                        self.terminate(pid, ExitStatus::from_exit_code(0));
                        return;
                    }
                    false => {
                        let room = output
                            .and_then(|id| self.pipes.get(&id))
                            .map_or(usize::MAX, |out| PIPE_CAPACITY - out.buf.len());
                        let pipe = self.pipes.get_mut(&input.expect("checked")).expect("open");
                        let n = room.min(pipe.buf.len());
                        pipe.buf.drain(..n).collect()
                    }
                };
                if let Some(out) = output.and_then(|id| self.pipes.get_mut(&id)) {
                    if out.readers > 0 {
                        out.buf.extend(data);
                        self.stamps += 1;
                        out.stamp = self.stamps;
                    }
                }
                self.changed = true;
                self.log_event(format_args!("child {pid} copies input"));
            }
        }
    }
}
