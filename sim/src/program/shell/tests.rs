//! The lexer's unit tests.

use super::parse::{Command, Param, Part, parse};

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
