//! A run of a script's commands to the child's plan.

use std::time::Duration;

use super::builtins::{exit_code, ignored_by_default, ulimit};
use super::parse::{Command, Lexer, Param, Part, construct, parse, refuse};
use crate::program::arith::{self, ArithError};
use crate::program::{ChildPlan, Invocation, Lookup, Unmodelled, echo_output};

/// Characters that split the result of an unquoted expansion (dash resets `IFS` to
/// these whatever the environment says).
const IFS: [char; 3] = [' ', '\t', '\n'];

/// Variables the shell sets itself rather than taking from its environment.
const SHELL_SET: [&str; 8] = [
    "PPID", "PWD", "IFS", "PS1", "PS2", "PS4", "OPTIND", "LINENO",
];

/// How a run of the script stops early.
pub(super) enum Stop {
    /// Outside the subset: the spawn is refused.
    Refuse(Unmodelled),
    /// An error the shell reports (the message after its `NAME: LINE: ` prefix); it
    /// then exits 2.
    Fail(String),
}

impl From<Unmodelled> for Stop {
    fn from(refusal: Unmodelled) -> Stop {
        Stop::Refuse(refusal)
    }
}

/// What a command leaves the script to do.
pub(super) enum Flow {
    Next,
    End(ChildPlan),
}

/// One run of a script: what it has written and slept so far, and `$?`.
pub(in crate::program) struct Shell<'a> {
    /// The shell's own invocation: its environment, its pid if known.
    pub(super) invocation: &'a Invocation,
    /// `$0`.
    name: String,
    lookup: &'a Lookup<'a>,
    depth: usize,
    pub(super) status: u8,
    pub(super) stdout: Vec<u8>,
    pub(super) stderr: Vec<u8>,
    pub(super) elapsed: Duration,
}

impl<'a> Shell<'a> {
    pub(in crate::program) fn new(
        invocation: &'a Invocation,
        name: String,
        lookup: &'a Lookup<'a>,
        depth: usize,
    ) -> Shell<'a> {
        Shell {
            invocation,
            name,
            lookup,
            depth,
            status: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// Runs `script` to its plan.
    pub(in crate::program) fn run(mut self, script: &str) -> Result<ChildPlan, Unmodelled> {
        let commands = parse(script)?;
        for (index, command) in commands.iter().enumerate() {
            match self.command(command, &commands[index + 1..]) {
                Ok(Flow::Next) => {}
                Ok(Flow::End(plan)) => return Ok(plan),
                Err(Stop::Refuse(refusal)) => return Err(refusal),
                Err(Stop::Fail(message)) => {
                    let line = format!("{}: {}: {message}\n", self.name, command.line);
                    self.stderr.extend_from_slice(line.as_bytes());
                    return Ok(self.exit(2));
                }
            }
        }
        let status = self.status;
        Ok(self.exit(status))
    }

    fn exit(&mut self, code: u8) -> ChildPlan {
        ChildPlan::Exit {
            code,
            after: self.elapsed,
            stdout: std::mem::take(&mut self.stdout),
            stderr: std::mem::take(&mut self.stderr),
        }
    }

    /// Runs `command`; `rest` are the script's commands after it.
    fn command(&mut self, command: &Command, rest: &[Command]) -> Result<Flow, Stop> {
        let last = rest.is_empty();
        let fields = self.fields(&command.words)?;
        let Some((name, args)) = fields.split_first() else {
            self.status = 0;
            return Ok(Flow::Next);
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match name.as_str() {
            "exit" => {
                let code = match args.first() {
                    None => self.status,
                    Some(arg) => exit_code(arg)?,
                };
                Ok(Flow::End(self.exit(code)))
            }
            "true" | ":" => {
                self.status = 0;
                Ok(Flow::Next)
            }
            "false" => {
                self.status = 1;
                Ok(Flow::Next)
            }
            "echo" => {
                let bytes = echo_output(&args)?;
                if command.to_stderr {
                    self.stderr.extend(bytes);
                } else {
                    self.stdout.extend(bytes);
                }
                self.status = 0;
                Ok(Flow::Next)
            }
            "ulimit" => {
                ulimit(&args)?;
                self.status = 0;
                Ok(Flow::Next)
            }
            "kill" => self.kill(&args, last),
            "read" => self.read(&args, rest),
            "exec" if command.to_stderr => Err(construct(
                "exec >&2",
                "a redirection of `exec` changes the shell's own streams, which is not modelled",
            )
            .into()),
            "exec" => match args.split_first() {
                None => {
                    self.status = 0;
                    Ok(Flow::Next)
                }
                Some((program, rest)) => {
                    let invocation = self.invocation.command(program, rest, true);
                    let plan = self.find(&invocation)?;
                    Ok(Flow::End(self.exec_into(plan)?))
                }
            },
            program => {
                let invocation = self.invocation.command(program, &args, false);
                let plan = self.find(&invocation)?;
                self.wait_for(program, plan, command.to_stderr, last)
            }
        }
    }

    /// The plan of a program the script names; refused if there is none.
    fn find(&self, invocation: &Invocation) -> Result<ChildPlan, Unmodelled> {
        self.lookup
            .find(invocation, self.depth + 1)?
            .ok_or_else(|| Unmodelled::command(invocation))
    }

    /// `exec`: the shell becomes the program, after what it has written and slept.
    fn exec_into(&mut self, plan: ChildPlan) -> Result<ChildPlan, Unmodelled> {
        let elapsed = self.elapsed;
        let prefix_out = std::mem::take(&mut self.stdout);
        let prefix_err = std::mem::take(&mut self.stderr);
        let joined = |prefix: Vec<u8>, rest: Vec<u8>| [prefix, rest].concat();
        let later = |after: Duration| {
            elapsed
                .checked_add(after)
                .ok_or_else(|| refuse("the sleeps' sum", "a duration beyond u64 seconds"))
        };
        Ok(match plan {
            ChildPlan::Exit {
                code,
                after,
                stdout,
                stderr,
            } => ChildPlan::Exit {
                code,
                after: later(after)?,
                stdout: joined(prefix_out, stdout),
                stderr: joined(prefix_err, stderr),
            },
            ChildPlan::Killed {
                signal,
                after,
                stdout,
                stderr,
            } => ChildPlan::Killed {
                signal,
                after: later(after)?,
                stdout: joined(prefix_out, stdout),
                stderr: joined(prefix_err, stderr),
            },
            ChildPlan::ReadLine {
                stdout,
                stderr,
                code,
            } if elapsed.is_zero() => ChildPlan::ReadLine {
                stdout: joined(prefix_out, stdout),
                stderr: joined(prefix_err, stderr),
                code,
            },
            ChildPlan::ReadLine { .. } => {
                return Err(refuse(
                    "a sleep before a program that reads a line of its input",
                    "such a child's plan reads at once",
                ));
            }
            ChildPlan::Forever if prefix_out.is_empty() && prefix_err.is_empty() => {
                ChildPlan::Forever
            }
            ChildPlan::Cat
                if prefix_out.is_empty() && prefix_err.is_empty() && elapsed.is_zero() =>
            {
                ChildPlan::Cat
            }
            ChildPlan::Forever | ChildPlan::Cat => {
                return Err(refuse(
                    "output or a sleep before a program that runs until killed or copies its input",
                    "such a child's plan has no place for them",
                ));
            }
        })
    }

    /// A program run as a command: the shell waits for it and goes on with its status.
    fn wait_for(
        &mut self,
        program: &str,
        plan: ChildPlan,
        to_stderr: bool,
        last: bool,
    ) -> Result<Flow, Stop> {
        match plan {
            ChildPlan::Exit {
                code,
                after,
                stdout,
                stderr,
            } => {
                self.sleep(after)?;
                self.write(stdout, to_stderr);
                self.stderr.extend(stderr);
                self.status = code;
                Ok(Flow::Next)
            }
            ChildPlan::Killed {
                signal,
                after,
                stdout,
                stderr,
            } if ignored_by_default(signal) => {
                self.sleep(after)?;
                self.write(stdout, to_stderr);
                self.stderr.extend(stderr);
                self.status = 0;
                Ok(Flow::Next)
            }
            ChildPlan::Killed { .. } => Err(refuse(
                format!("`{program}` dying of a signal as a command of the shell"),
                "the shell would report it on its standard error and go on: run it with `exec`",
            )
            .into()),
            ChildPlan::ReadLine {
                stdout,
                stderr,
                code,
            } if last && self.elapsed.is_zero() => {
                // The shell's status, and so its exit status, is the program's.
                self.write(stdout, to_stderr);
                self.stderr.extend(stderr);
                Ok(Flow::End(ChildPlan::ReadLine {
                    stdout: std::mem::take(&mut self.stdout),
                    stderr: std::mem::take(&mut self.stderr),
                    code,
                }))
            }
            ChildPlan::ReadLine { .. } => Err(refuse(
                format!("`{program}` after a sleep, or before other commands"),
                "a program that reads a line of its input is modelled only as the script's \
                 last command, with nothing slept before it",
            )
            .into()),
            ChildPlan::Forever if self.stdout.is_empty() && self.stderr.is_empty() => {
                Ok(Flow::End(ChildPlan::Forever))
            }
            ChildPlan::Cat
                if last
                    && !to_stderr
                    && self.stdout.is_empty()
                    && self.stderr.is_empty()
                    && self.elapsed.is_zero() =>
            {
                Ok(Flow::End(ChildPlan::Cat))
            }
            ChildPlan::Forever | ChildPlan::Cat => Err(refuse(
                format!("`{program}` after output or a sleep, or before other commands"),
                "a program that runs until killed or copies its input is modelled only as the \
                 script's one command",
            )
            .into()),
        }
    }

    fn write(&mut self, bytes: Vec<u8>, to_stderr: bool) {
        if to_stderr {
            self.stderr.extend(bytes);
        } else {
            self.stdout.extend(bytes);
        }
    }

    fn sleep(&mut self, after: Duration) -> Result<(), Unmodelled> {
        self.elapsed = self
            .elapsed
            .checked_add(after)
            .ok_or_else(|| refuse("the sleeps' sum", "a duration beyond u64 seconds"))?;
        Ok(())
    }
    /// The fields the words expand to: parameters and arithmetic, then splitting of
    /// what an unquoted expansion gave.
    pub(super) fn fields(&self, words: &[Vec<Part>]) -> Result<Vec<String>, Stop> {
        let mut fields = Vec::new();
        for word in words {
            let mut current = String::new();
            let mut counts = false;
            for part in word {
                let (value, quoted) = match part {
                    Part::Text { text, quoted } => {
                        current.push_str(text);
                        counts |= *quoted;
                        continue;
                    }
                    Part::Param { param, quoted } => {
                        (self.param(param)?.unwrap_or_default(), *quoted)
                    }
                    Part::Arith { text, quoted } => (self.arithmetic(text)?, *quoted),
                };
                if quoted {
                    current.push_str(&value);
                    counts = true;
                    continue;
                }
                if value.contains(['*', '?', '[']) {
                    return Err(refuse(
                        format!("an unquoted expansion to `{value}`"),
                        "pathname expansion (globbing) is outside the subset: quote the expansion",
                    )
                    .into());
                }
                for c in value.chars() {
                    if IFS.contains(&c) {
                        if counts || !current.is_empty() {
                            fields.push(std::mem::take(&mut current));
                        }
                        counts = false;
                    } else {
                        current.push(c);
                    }
                }
            }
            if counts || !current.is_empty() {
                fields.push(current);
            }
        }
        Ok(fields)
    }

    /// A parameter's value; `None` when unset.
    fn param(&self, param: &Param) -> Result<Option<String>, Unmodelled> {
        Ok(Some(match param {
            Param::Pid => match self.invocation.pid {
                Some(pid) => pid.0.to_string(),
                None => {
                    return Err(refuse(
                        "`$$` in a shell that another shell runs as a command",
                        "its pid is not modelled: use `exec sh -c …`",
                    ));
                }
            },
            Param::Status => self.status.to_string(),
            Param::Zero => self.name.clone(),
            Param::Name(name) => return self.var(name),
        }))
    }

    fn var(&self, name: &str) -> Result<Option<String>, Unmodelled> {
        if SHELL_SET.contains(&name) {
            return Err(refuse(
                format!("`${name}`"),
                "the shell sets it itself, which is not modelled",
            ));
        }
        match self.invocation.env.get(std::ffi::OsStr::new(name)) {
            Some(value) => match value.to_str() {
                Some(value) => Ok(Some(value.to_string())),
                None => Err(refuse(format!("`${name}`"), "its value is not UTF-8")),
            },
            None if name == "PATH" => Err(refuse(
                "`$PATH`",
                "when the environment has none the shell sets its own, which is not modelled",
            )),
            None => Ok(None),
        }
    }

    /// `$((text))`.
    fn arithmetic(&self, text: &str) -> Result<String, Stop> {
        let expanded = self.expand_in_arithmetic(text)?;
        let var = |name: &str| self.var(name);
        match arith::eval(&expanded, &var) {
            Ok(value) => Ok(value.to_string()),
            Err(ArithError::DivisionByZero) => Err(Stop::Fail(format!(
                "arithmetic expression: division by zero: \"{expanded}\""
            ))),
            Err(ArithError::Refused(refusal)) => Err(Stop::Refuse(refusal)),
        }
    }

    /// The text of `$((text))` with its `$` parameters replaced by their values.
    fn expand_in_arithmetic(&self, text: &str) -> Result<String, Unmodelled> {
        let mut lexer = Lexer {
            chars: text.chars().collect(),
            at: 0,
            line: 1,
            commands: Vec::new(),
            command: Command::default(),
            word: None,
        };
        let mut out = String::new();
        while let Some(c) = lexer.peek(0) {
            if c != '$' {
                out.push(c);
                lexer.at += 1;
                continue;
            }
            lexer.dollar(true)?;
            match lexer.word.take().and_then(|mut parts| parts.pop()) {
                Some(Part::Param { param, .. }) => {
                    out.push_str(&self.param(&param)?.unwrap_or_default());
                }
                _ => {
                    return Err(refuse(
                        format!("`$(({text}))`"),
                        "only `$NAME`, `${NAME}`, `$$`, `$?` and `$0` are modelled inside \
                         arithmetic",
                    ));
                }
            }
        }
        Ok(out)
    }
}
