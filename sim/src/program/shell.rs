//! The simulator's `sh -c`: a lexer for the subset of the shell language the module
//! documentation lists, and a run of the script's commands that ends in a
//! [`ChildPlan`]. Whatever is outside the subset, or where dash and bash would not
//! agree, is refused with an [`Unmodelled`] naming it.

use std::time::Duration;

use loopwatch::kernel::Signal;

use super::arith::{self, ArithError};
use super::{ChildPlan, Invocation, Lookup, Unmodelled, echo_output};

/// Characters that split the result of an unquoted expansion (dash resets `IFS` to
/// these whatever the environment says).
const IFS: [char; 3] = [' ', '\t', '\n'];

/// Words that begin a compound command or are otherwise reserved at a command's start.
const RESERVED: [&str; 18] = [
    "if", "then", "else", "elif", "fi", "do", "done", "case", "esac", "while", "until", "for",
    "in", "function", "select", "time", "!", "coproc",
];

/// Variables the shell sets itself rather than taking from its environment.
const SHELL_SET: [&str; 8] = [
    "PPID", "PWD", "IFS", "PS1", "PS2", "PS4", "OPTIND", "LINENO",
];

/// A parameter `$…` names.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Param {
    /// `$NAME` or `${NAME}`.
    Name(String),
    /// `$$`.
    Pid,
    /// `$?`.
    Status,
    /// `$0`.
    Zero,
}

/// A piece of a word: quoted text is not split, and makes a word even when empty.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text {
        text: String,
        quoted: bool,
    },
    Param {
        param: Param,
        quoted: bool,
    },
    /// `$((text))`; the `$` expansions in `text` are done when it is evaluated.
    Arith {
        text: String,
        quoted: bool,
    },
}

/// One simple command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Command {
    /// The line it starts on, for the shell's error messages.
    line: usize,
    words: Vec<Vec<Part>>,
    /// `>&2` (or `1>&2`): its standard output goes to standard error.
    to_stderr: bool,
}

fn refuse(what: impl Into<String>, why: &str) -> Unmodelled {
    Unmodelled::new(what, why)
}

/// `what` in backquotes, as Markdown code (doubled, with spaces, around a backquote).
fn construct(what: &str, why: &str) -> Unmodelled {
    if what.contains('`') {
        refuse(format!("`` {what} ``"), why)
    } else {
        refuse(format!("`{what}`"), why)
    }
}

/// Splits `script` into simple commands, refusing anything outside the subset.
fn parse(script: &str) -> Result<Vec<Command>, Unmodelled> {
    Lexer {
        chars: script.chars().collect(),
        at: 0,
        line: 1,
        commands: Vec::new(),
        command: Command::default(),
        word: None,
    }
    .run()
}

struct Lexer {
    chars: Vec<char>,
    at: usize,
    line: usize,
    commands: Vec<Command>,
    command: Command,
    /// The word being read, if one has begun.
    word: Option<Vec<Part>>,
}

impl Lexer {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }

    fn push(&mut self, part: Part) {
        if self.word.is_none() && self.command.words.is_empty() {
            self.command.line = self.line;
        }
        let word = self.word.get_or_insert_with(Vec::new);
        match (word.last_mut(), &part) {
            (
                Some(Part::Text { text, quoted }),
                Part::Text {
                    text: more,
                    quoted: more_quoted,
                },
            ) if quoted == more_quoted => text.push_str(more),
            _ => word.push(part),
        }
    }

    fn text(&mut self, c: char, quoted: bool) {
        self.push(Part::Text {
            text: c.to_string(),
            quoted,
        });
    }

    fn end_word(&mut self) {
        if let Some(word) = self.word.take() {
            self.command.words.push(word);
        }
    }

    /// Ends the command at a `;` (`explicit`: a command must precede it) or a newline.
    fn end_command(&mut self, explicit: bool) -> Result<(), Unmodelled> {
        self.end_word();
        let command = std::mem::take(&mut self.command);
        if command.words.is_empty() && !command.to_stderr {
            if explicit {
                return Err(construct(
                    ";",
                    "a `;` without a command before it is a syntax error",
                ));
            }
            return Ok(());
        }
        if let Some(first) = command.words.first() {
            if let [
                Part::Text {
                    text,
                    quoted: false,
                },
                ..,
            ] = first.as_slice()
            {
                if first.len() == 1 && RESERVED.contains(&text.as_str()) {
                    return Err(construct(
                        text,
                        "compound commands (if, while, for, case …) are outside the subset",
                    ));
                }
                if let Some((name, _)) = text.split_once('=') {
                    if is_name(name) {
                        return Err(construct(
                            &format!("{name}="),
                            "variable assignments are outside the subset: pass variables in the \
                             SpawnRequest's env",
                        ));
                    }
                }
            }
        }
        self.commands.push(command);
        Ok(())
    }

    fn run(mut self) -> Result<Vec<Command>, Unmodelled> {
        while let Some(c) = self.peek(0) {
            match c {
                ' ' | '\t' => {
                    self.end_word();
                    self.at += 1;
                }
                '\n' => {
                    self.end_command(false)?;
                    self.line += 1;
                    self.at += 1;
                }
                ';' => {
                    if self.peek(1) == Some(';') {
                        return Err(construct(";;", "`case` is outside the subset"));
                    }
                    self.end_command(true)?;
                    self.at += 1;
                }
                '#' if self.word.is_none() => {
                    while self.peek(0).is_some_and(|c| c != '\n') {
                        self.at += 1;
                    }
                }
                '\'' => self.single_quoted()?,
                '"' => self.double_quoted()?,
                '\\' => {
                    match self.peek(1) {
                        None => {
                            return Err(construct(
                                "\\",
                                "a backslash at the end of the script is not modelled",
                            ));
                        }
                        Some('\n') => self.line += 1,
                        Some(next) => self.text(next, true),
                    }
                    self.at += 2;
                }
                '$' => self.dollar(false)?,
                '>' => self.redirection()?,
                '|' => return Err(construct("|", "pipelines and `||` are outside the subset")),
                '&' => {
                    return Err(construct(
                        "&",
                        "background jobs and `&&` are outside the subset",
                    ));
                }
                '<' => {
                    return Err(construct(
                        "<",
                        "input redirections and here-documents are outside the subset",
                    ));
                }
                '(' | ')' => {
                    return Err(construct(
                        &c.to_string(),
                        "subshells are outside the subset",
                    ));
                }
                '{' | '}' => {
                    return Err(construct(
                        &c.to_string(),
                        "command groups and brace expansion are outside the subset",
                    ));
                }
                '`' => {
                    return Err(construct("`", "command substitution is outside the subset"));
                }
                '*' | '?' | '[' => {
                    return Err(construct(
                        &c.to_string(),
                        "pathname expansion (globbing) is outside the subset: quote the character",
                    ));
                }
                '~' if self.word.is_none() => {
                    return Err(construct(
                        "~",
                        "tilde expansion is outside the subset: quote the character",
                    ));
                }
                _ => {
                    self.text(c, false);
                    self.at += 1;
                }
            }
        }
        self.end_command(false)?;
        Ok(self.commands)
    }

    fn single_quoted(&mut self) -> Result<(), Unmodelled> {
        let start = self.at + 1;
        let Some(length) = self.chars[start..].iter().position(|&c| c == '\'') else {
            return Err(construct(
                "'",
                "an unterminated quoted string is a syntax error",
            ));
        };
        let text: String = self.chars[start..start + length].iter().collect();
        self.line += text.matches('\n').count();
        self.push(Part::Text { text, quoted: true });
        self.at = start + length + 1;
        Ok(())
    }

    fn double_quoted(&mut self) -> Result<(), Unmodelled> {
        // An empty "" still makes a word.
        self.push(Part::Text {
            text: String::new(),
            quoted: true,
        });
        self.at += 1;
        loop {
            match self.peek(0) {
                None => {
                    return Err(construct(
                        "\"",
                        "an unterminated quoted string is a syntax error",
                    ));
                }
                Some('"') => {
                    self.at += 1;
                    return Ok(());
                }
                Some('\\') => {
                    match self.peek(1) {
                        Some('\n') => self.line += 1,
                        Some(next @ ('$' | '`' | '"' | '\\')) => self.text(next, true),
                        // Before any other character the backslash stays.
                        _ => {
                            self.text('\\', true);
                            self.at += 1;
                            continue;
                        }
                    }
                    self.at += 2;
                }
                Some('$') => self.dollar(true)?,
                Some('`') => {
                    return Err(construct("`", "command substitution is outside the subset"));
                }
                Some(c) => {
                    if c == '\n' {
                        self.line += 1;
                    }
                    self.text(c, true);
                    self.at += 1;
                }
            }
        }
    }

    /// `$…` at the cursor.
    fn dollar(&mut self, quoted: bool) -> Result<(), Unmodelled> {
        let param = |param| Part::Param { param, quoted };
        match self.peek(1) {
            Some('(') if self.peek(2) == Some('(') => return self.arithmetic(quoted),
            Some('(') => {
                return Err(construct(
                    "$(",
                    "command substitution is outside the subset",
                ));
            }
            Some('{') => {
                let start = self.at + 2;
                let Some(length) = self.chars[start..].iter().position(|&c| c == '}') else {
                    return Err(construct("${", "a `${` without its `}` is a syntax error"));
                };
                let inner: String = self.chars[start..start + length].iter().collect();
                let part = match inner.as_str() {
                    "$" => param(Param::Pid),
                    "?" => param(Param::Status),
                    "0" => param(Param::Zero),
                    name if is_name(name) => param(Param::Name(name.to_string())),
                    _ => return Err(parameter_refusal(&format!("${{{inner}}}"))),
                };
                self.push(part);
                self.at = start + length + 1;
            }
            Some('$') => {
                self.push(param(Param::Pid));
                self.at += 2;
            }
            Some('?') => {
                self.push(param(Param::Status));
                self.at += 2;
            }
            Some('0') => {
                self.push(param(Param::Zero));
                self.at += 2;
            }
            Some(c @ ('1'..='9' | '#' | '@' | '*' | '!' | '-')) => {
                return Err(parameter_refusal(&format!("${c}")));
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let start = self.at + 1;
                let mut end = start;
                while self
                    .chars
                    .get(end)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    end += 1;
                }
                let name: String = self.chars[start..end].iter().collect();
                self.push(param(Param::Name(name)));
                self.at = end;
            }
            Some(c @ ('\'' | '"')) if !quoted => {
                return Err(construct(
                    &format!("${c}"),
                    "`$'…'` and `$\"…\"` quoting differ between shells",
                ));
            }
            // A `$` before anything else is itself.
            _ => {
                self.text('$', quoted);
                self.at += 1;
            }
        }
        Ok(())
    }

    /// `$((…))` at the cursor: its text up to the matching `))`.
    fn arithmetic(&mut self, quoted: bool) -> Result<(), Unmodelled> {
        let start = self.at + 3;
        let mut depth = 0usize;
        let mut end = start;
        loop {
            match self.chars.get(end) {
                None => {
                    return Err(construct(
                        "$((",
                        "a `$((` without its `))` is a syntax error",
                    ));
                }
                Some('(') => depth += 1,
                Some(')') if depth > 0 => depth -= 1,
                Some(')') if self.chars.get(end + 1) == Some(&')') => break,
                Some(')') => {
                    return Err(construct(
                        "$((",
                        "a `$((` that is not arithmetic is outside the subset",
                    ));
                }
                Some('\'' | '"' | '\\' | '`') => {
                    return Err(construct(
                        "$((",
                        "quoting inside arithmetic is outside the subset",
                    ));
                }
                Some(_) => {}
            }
            end += 1;
        }
        let text: String = self.chars[start..end].iter().collect();
        self.line += text.matches('\n').count();
        self.push(Part::Arith { text, quoted });
        self.at = end + 2;
        Ok(())
    }

    /// `>` at the cursor: only `>&2`, optionally as `1>&2`.
    fn redirection(&mut self) -> Result<(), Unmodelled> {
        let io_number = match self.word.as_deref() {
            Some(
                [
                    Part::Text {
                        text,
                        quoted: false,
                    },
                ],
            ) if text.bytes().all(|b| b.is_ascii_digit()) => Some(text.clone()),
            _ => None,
        };
        let delimited = self
            .peek(3)
            .is_none_or(|c| matches!(c, ' ' | '\t' | '\n' | ';'));
        let to_stderr = self.peek(1) == Some('&') && self.peek(2) == Some('2') && delimited;
        if !to_stderr || io_number.as_deref().is_some_and(|n| n != "1") {
            let shown: String = self.chars[self.at..]
                .iter()
                .take_while(|c| !matches!(c, ' ' | '\t' | '\n' | ';'))
                .collect();
            return Err(construct(
                &format!("{}{shown}", io_number.unwrap_or_default()),
                "the only redirection modelled is `>&2` (standard output to standard error)",
            ));
        }
        if io_number.is_some() {
            self.word = None;
        }
        self.end_word();
        self.command.to_stderr = true;
        self.at += 3;
        Ok(())
    }
}

fn parameter_refusal(shown: &str) -> Unmodelled {
    construct(
        shown,
        "positional and special parameters other than `$$`, `$?` and `$0`, and the `${…}` \
         operators, are outside the subset",
    )
}

/// Whether `text` is a shell variable name.
pub(super) fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `part` depends on what `read -r name` read: the variable `name`, or `$?`.
fn uses_read(part: &Part, name: &str) -> bool {
    match part {
        Part::Text { .. }
        | Part::Param {
            param: Param::Pid | Param::Zero,
            ..
        } => false,
        Part::Param {
            param: Param::Status,
            ..
        } => true,
        Part::Param {
            param: Param::Name(used),
            ..
        } => used == name,
        Part::Arith { text, .. } => {
            text.contains('?')
                || text
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .any(|word| word == name)
        }
    }
}

/// A command's words as written, roughly, for a message.
fn words_shown(words: &[Vec<Part>]) -> String {
    let word = |parts: &Vec<Part>| -> String {
        parts
            .iter()
            .map(|part| match part {
                Part::Text { text, .. } => text.clone(),
                Part::Param { param, .. } => match param {
                    Param::Name(name) => format!("${name}"),
                    Param::Pid => "$$".to_string(),
                    Param::Status => "$?".to_string(),
                    Param::Zero => "$0".to_string(),
                },
                Part::Arith { text, .. } => format!("$(({text}))"),
            })
            .collect()
    };
    words.iter().map(word).collect::<Vec<_>>().join(" ")
}

/// How a run of the script stops early.
enum Stop {
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
enum Flow {
    Next,
    End(ChildPlan),
}

/// One run of a script: what it has written and slept so far, and `$?`.
pub(super) struct Shell<'a> {
    /// The shell's own invocation: its environment, its pid if known.
    invocation: &'a Invocation,
    /// `$0`.
    name: String,
    lookup: &'a Lookup<'a>,
    depth: usize,
    status: u8,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    elapsed: Duration,
}

impl<'a> Shell<'a> {
    pub(super) fn new(
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
    pub(super) fn run(mut self, script: &str) -> Result<ChildPlan, Unmodelled> {
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

    /// `read -r NAME`: the shell reads one line of its standard input. The line itself
    /// is not modelled, so the read ends the script: with nothing slept before it (the
    /// plan reads at once) and only `exit [N]` after it, where N uses neither the line
    /// nor `$?` (`read`'s status); without N the script exits with `read`'s status.
    fn read(&mut self, args: &[&str], rest: &[Command]) -> Result<Flow, Stop> {
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
    fn kill(&mut self, args: &[&str], last: bool) -> Result<Flow, Stop> {
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

    /// The fields the words expand to: parameters and arithmetic, then splitting of
    /// what an unquoted expansion gave.
    fn fields(&self, words: &[Vec<Part>]) -> Result<Vec<String>, Stop> {
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

/// `exit N` as dash reads N: decimal, at most `INT_MAX`, the status is N mod 256; any
/// other value is its "Illegal number" error.
fn exit_code(arg: &str) -> Result<u8, Stop> {
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
fn ulimit(args: &[&str]) -> Result<(), Unmodelled> {
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

#[cfg(test)]
mod tests {
    use super::{Command, Param, Part, parse};

    fn text(text: &str, quoted: bool) -> Part {
        Part::Text {
            text: text.into(),
            quoted,
        }
    }

    #[test]
    fn lexes_words_quotes_and_expansions() {
        let commands = parse("echo 'a b'\"$N\"x${M} $$ $((1 + $N)) >&2; exit 3 # done\n").unwrap();
        assert_eq!(
            commands,
            [
                Command {
                    line: 1,
                    words: vec![
                        vec![text("echo", false)],
                        vec![
                            text("a b", true),
                            Part::Param {
                                param: Param::Name("N".into()),
                                quoted: true
                            },
                            text("x", false),
                            Part::Param {
                                param: Param::Name("M".into()),
                                quoted: false
                            },
                        ],
                        vec![Part::Param {
                            param: Param::Pid,
                            quoted: false
                        }],
                        vec![Part::Arith {
                            text: "1 + $N".into(),
                            quoted: false
                        }],
                    ],
                    to_stderr: true,
                },
                Command {
                    line: 1,
                    words: vec![vec![text("exit", false)], vec![text("3", false)]],
                    to_stderr: false,
                },
            ]
        );
    }

    #[test]
    fn counts_lines_and_skips_empty_ones() {
        let commands = parse("\n\ntrue\n  \necho a\\\nb\nexit").unwrap();
        let lines: Vec<usize> = commands.iter().map(|c| c.line).collect();
        assert_eq!(lines, [3, 5, 7]);
        assert_eq!(commands[1].words[1], [text("ab", false)]);
    }

    #[test]
    fn io_number_one_and_redirection_after_a_word() {
        let commands = parse("echo a 1>&2; echo b>&2").unwrap();
        assert_eq!(commands[0].words.len(), 2);
        assert!(commands[0].to_stderr);
        assert_eq!(commands[1].words[1], [text("b", false)]);
        assert!(commands[1].to_stderr);
    }

    #[test]
    fn refuses_constructs_outside_the_subset() {
        for script in [
            "a | b",
            "a && b",
            "a &",
            "a < f",
            "echo a > f",
            "echo a 2>&1",
            "echo a >&2x",
            "(exit 3)",
            "{ exit 3; }",
            "echo `x`",
            "echo $(x)",
            "echo *",
            "echo ~",
            "echo $1",
            "echo ${N:-x}",
            "X=1; exit $X",
            "if true; then exit 3; fi",
            ";",
            "true;;",
            "echo 'a",
            "echo \"a",
            "echo ${N",
            "echo $((1 + 2)",
            "echo $'a'",
            "! true",
        ] {
            let refusal = parse(script).expect_err(script);
            assert!(
                refusal
                    .to_string()
                    .starts_with("the simulator does not model `"),
                "{script}: {refusal}"
            );
        }
    }
}
