//! The built-in commands' helpers, and the `Shell` methods of `read` and `kill`.

use loopwatch::kernel::Signal;

use super::parse::{Command, is_name, refuse, uses_read, words_shown};
use super::run::{Flow, Shell, Stop};
use crate::program::{ChildPlan, Unmodelled};

impl Shell<'_> {
    /// `read -r NAME`: the shell reads one line of its standard input. The line itself
    /// is not modelled, so the read ends the script: with nothing slept before it (the
    /// plan reads at once) and only `exit [N]` after it, where N uses neither the line
    /// nor `$?` (`read`'s status); without N the script exits with `read`'s status.
    pub(super) fn read(&mut self, args: &[&str], rest: &[Command]) -> Result<Flow, Stop> {
        let shown = format!("`read {}`", args.join(" "));
        let ["-r", name] = args else {
            return Err(refuse(
                shown,
                "only `read -r NAME` is modelled: one variable, and no backslash escapes \
                 (without `-r` a backslash-newline reads on into the next line)",
            )
            .into());
        };
        if !is_name(name) {
            return Err(refuse(shown, "NAME must be a variable name").into());
        }
        if !self.elapsed.is_zero() {
            return Err(refuse(
                format!("{shown} after a sleep"),
                "the simulated child reads at once: sleep after the read or not at all",
            )
            .into());
        }
        let code = match rest {
            [] => None,
            [exit] => self.exit_after_read(exit, name, &shown)?,
            [_, next, ..] => {
                return Err(refuse(
                    format!("`{}` after {shown}", words_shown(&next.words)),
                    "only one `exit [N]` may follow `read`: what a script does with the line \
                     is not modelled",
                )
                .into());
            }
        };
        Ok(Flow::End(ChildPlan::ReadLine {
            stdout: std::mem::take(&mut self.stdout),
            stderr: std::mem::take(&mut self.stderr),
            code,
        }))
    }

    /// The code of the `exit [N]` that follows `read -r NAME`: `None` for `read`'s own
    /// status.
    fn exit_after_read(
        &self,
        exit: &Command,
        name: &str,
        read: &str,
    ) -> Result<Option<u8>, Unmodelled> {
        let shown = || format!("`{}` after {read}", words_shown(&exit.words));
        if exit
            .words
            .iter()
            .flatten()
            .any(|part| uses_read(part, name))
        {
            return Err(refuse(
                shown(),
                "the line read and `read`'s status are not modelled: only their end is",
            ));
        }
        let after_error = || {
            refuse(
                shown(),
                "an error of the shell after `read` is not modelled: the plan writes before \
                 it reads",
            )
        };
        let fields = match self.fields(&exit.words) {
            Ok(fields) => fields,
            Err(Stop::Refuse(refusal)) => return Err(refusal),
            Err(Stop::Fail(_)) => return Err(after_error()),
        };
        match fields.split_first() {
            Some((command, args)) if command == "exit" => match args.first() {
                None => Ok(None),
                Some(arg) => match exit_code(arg) {
                    Ok(code) => Ok(Some(code)),
                    Err(Stop::Refuse(refusal)) => Err(refusal),
                    Err(Stop::Fail(_)) => Err(after_error()),
                },
            },
            _ => Err(refuse(
                shown(),
                "only `exit [N]` may follow `read`: what a script does with the line is not \
                 modelled",
            )),
        }
    }

    /// `kill [-SIG | -s SIG] $$`.
    pub(super) fn kill(&mut self, args: &[&str], last: bool) -> Result<Flow, Stop> {
        let shown = || format!("`kill {}`", args.join(" "));
        let (signal, targets) = match args {
            ["-s", name, rest @ ..] => (signal_named(name)?, rest),
            [option, rest @ ..] if option.starts_with('-') && option.len() > 1 => {
                (signal_named(&option[1..])?, rest)
            }
            _ => (Signal::SIGTERM, args),
        };
        let own = self.invocation.pid.map(|pid| pid.0.to_string());
        match (targets, own) {
            ([target], Some(own)) if *target == own => {}
            (_, None) => {
                return Err(refuse(
                    shown(),
                    "the pid of a shell that another shell runs as a command is not modelled: \
                     use `exec sh -c …`",
                )
                .into());
            }
            _ => {
                return Err(refuse(
                    shown(),
                    "only a shell's `kill` of itself (`$$`) is modelled",
                )
                .into());
            }
        }
        if signal.0 == 0 || ignored_by_default(signal) {
            self.status = 0;
            return Ok(Flow::Next);
        }
        if (19..=22).contains(&signal.0) && !last {
            return Err(refuse(
                shown(),
                "commands after the shell stops itself are not modelled",
            )
            .into());
        }
        Ok(Flow::End(ChildPlan::Killed {
            signal,
            after: self.elapsed,
            stdout: std::mem::take(&mut self.stdout),
            stderr: std::mem::take(&mut self.stderr),
        }))
    }
}

/// `exit N` as dash reads N: decimal, at most `INT_MAX`, the status is N mod 256; any
/// other value is its "Illegal number" error.
pub(super) fn exit_code(arg: &str) -> Result<u8, Stop> {
    if arg.contains(char::is_whitespace) {
        return Err(refuse(
            format!("`exit {arg}`"),
            "blanks around the number are read differently by the shells",
        )
        .into());
    }
    let digits = arg.strip_prefix('+').unwrap_or(arg);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(value) = digits.parse::<u64>() {
            if value <= i32::MAX as u64 {
                return Ok((value % 256) as u8);
            }
        }
    } else if let Some(negative) = arg.strip_prefix('-') {
        if !negative.is_empty() && negative.bytes().all(|b| b == b'0') {
            return Err(refuse(
                format!("`exit {arg}`"),
                "a negative zero is read differently by the shells",
            )
            .into());
        }
    }
    Err(Stop::Fail(format!("exit: Illegal number: {arg}")))
}

/// `ulimit [-H|-S] -X N`: a limit is set, which changes nothing the simulator models.
/// Only setting is accepted: a query would print the limit.
pub(super) fn ulimit(args: &[&str]) -> Result<(), Unmodelled> {
    let flag = |arg: &str| {
        arg.len() == 2
            && arg.starts_with('-')
            && arg[1..]
                .bytes()
                .all(|b| b.is_ascii_lowercase() && b != b'a')
    };
    let rest = match args {
        ["-H" | "-S", rest @ ..] => rest,
        rest => rest,
    };
    match rest {
        [option, value]
            if flag(option)
                && (*value == "unlimited" || value.bytes().all(|b| b.is_ascii_digit())) =>
        {
            Ok(())
        }
        _ => Err(refuse(
            format!("`ulimit {}`", args.join(" ")),
            "only setting one limit (`ulimit -c 0`) is modelled: a query prints the limit",
        )),
    }
}

/// Whether a signal's default action is to do nothing.
pub(super) fn ignored_by_default(signal: Signal) -> bool {
    matches!(signal.0, 17 | 18 | 23 | 28)
}

/// A signal as `kill -NAME` or `kill -N` names it: a number up to 64, or a name
/// without the `SIG` prefix (which dash's `kill` refuses).
fn signal_named(text: &str) -> Result<Signal, Unmodelled> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(number @ 0..=64) = text.parse::<i32>() {
            if text == "0" || !text.starts_with('0') {
                return Ok(Signal(number));
            }
        }
        return Err(refuse(
            format!("`kill -{text}`"),
            "a signal number is 0 to 64, without leading zeros",
        ));
    }
    let upper = text.to_ascii_uppercase();
    if upper.starts_with("SIG") {
        return Err(refuse(
            format!("`kill -{text}`"),
            "dash's kill takes the name without `SIG` (`kill -TERM`)",
        ));
    }
    let number = match upper.as_str() {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "TRAP" => 5,
        "ABRT" => 6,
        "BUS" => 7,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "STKFLT" => 16,
        "CHLD" => 17,
        "CONT" => 18,
        "STOP" => 19,
        "TSTP" => 20,
        "TTIN" => 21,
        "TTOU" => 22,
        "URG" => 23,
        "XCPU" => 24,
        "XFSZ" => 25,
        "VTALRM" => 26,
        "PROF" => 27,
        "WINCH" => 28,
        "IO" => 29,
        "PWR" => 30,
        "SYS" => 31,
        _ => {
            return Err(refuse(
                format!("`kill -{text}`"),
                "not a signal name the simulator knows",
            ));
        }
    };
    Ok(Signal(number))
}
