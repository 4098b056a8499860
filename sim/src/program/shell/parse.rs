//! The lexer: a script split into simple commands, or refused.

use crate::program::Unmodelled;

/// Words that begin a compound command or are otherwise reserved at a command's start.
const RESERVED: [&str; 18] = [
    "if", "then", "else", "elif", "fi", "do", "done", "case", "esac", "while", "until", "for",
    "in", "function", "select", "time", "!", "coproc",
];

/// A parameter `$…` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Param {
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
pub(super) enum Part {
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
pub(super) struct Command {
    /// The line it starts on, for the shell's error messages.
    pub(super) line: usize,
    pub(super) words: Vec<Vec<Part>>,
    /// `>&2` (or `1>&2`): its standard output goes to standard error.
    pub(super) to_stderr: bool,
}

pub(super) fn refuse(what: impl Into<String>, why: &str) -> Unmodelled {
    Unmodelled::new(what, why)
}

/// `what` in backquotes, as Markdown code (doubled, with spaces, around a backquote).
pub(super) fn construct(what: &str, why: &str) -> Unmodelled {
    if what.contains('`') {
        refuse(format!("`` {what} ``"), why)
    } else {
        refuse(format!("`{what}`"), why)
    }
}

/// Splits `script` into simple commands, refusing anything outside the subset.
pub(super) fn parse(script: &str) -> Result<Vec<Command>, Unmodelled> {
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

pub(super) struct Lexer {
    pub(super) chars: Vec<char>,
    pub(super) at: usize,
    pub(super) line: usize,
    pub(super) commands: Vec<Command>,
    pub(super) command: Command,
    /// The word being read, if one has begun.
    pub(super) word: Option<Vec<Part>>,
}

impl Lexer {
    pub(super) fn peek(&self, ahead: usize) -> Option<char> {
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
    pub(super) fn dollar(&mut self, quoted: bool) -> Result<(), Unmodelled> {
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
pub(super) fn uses_read(part: &Part, name: &str) -> bool {
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
pub(super) fn words_shown(words: &[Vec<Part>]) -> String {
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
