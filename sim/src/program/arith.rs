//! The shell's arithmetic expansion `$((…))`: integers with `+ - * / %`, unary `+`
//! and `-`, and parentheses; a bare name reads a variable. Evaluated as dash does, on
//! 64-bit integers, after the `$` expansions inside have been replaced by their text.
//!
//! What the shells do not agree on is refused rather than guessed: numbers in octal or
//! hexadecimal, `++` and `--`, a variable whose value is not a decimal integer, any
//! overflow, and every operator outside the list.

use super::Unmodelled;

/// Why an expression has no value.
#[derive(Debug)]
pub(super) enum ArithError {
    /// Division or remainder by zero: the shell reports it and exits 2.
    DivisionByZero,
    /// Outside what the simulator models.
    Refused(Unmodelled),
}

impl From<Unmodelled> for ArithError {
    fn from(refusal: Unmodelled) -> ArithError {
        ArithError::Refused(refusal)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Number(i64),
    Name(String),
    Op(char),
}

#[derive(Debug)]
enum Expr {
    Number(i64),
    Var(String),
    Negate(Box<Expr>),
    Binary(char, Box<Expr>, Box<Expr>),
}

fn refuse(text: &str, why: &str) -> ArithError {
    ArithError::Refused(Unmodelled::new(format!("`$(({text}))`"), why))
}

fn tokens(text: &str) -> Result<Vec<Token>, ArithError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, ' ' | '\t' | '\n') {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let literal: String = chars[start..i].iter().collect();
            out.push(Token::Number(number(text, &literal)?));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Name(chars[start..i].iter().collect()));
        } else if matches!(c, '+' | '-') && chars.get(i + 1) == Some(&c) {
            return Err(refuse(
                text,
                "`++` and `--` are increments in bash and two signs in dash",
            ));
        } else if matches!(c, '+' | '-' | '*' | '/' | '%' | '(' | ')') {
            out.push(Token::Op(c));
            i += 1;
        } else {
            return Err(refuse(
                text,
                "only integers, variables, `+ - * / %` and parentheses are modelled",
            ));
        }
    }
    Ok(out)
}

/// A decimal literal; octal (`010`) and hexadecimal (`0x10`) are refused.
fn number(text: &str, literal: &str) -> Result<i64, ArithError> {
    if !literal.bytes().all(|b| b.is_ascii_digit())
        || (literal.len() > 1 && literal.starts_with('0'))
    {
        return Err(refuse(
            text,
            "only decimal numbers without leading zeros are modelled (no octal or hexadecimal)",
        ));
    }
    literal
        .parse()
        .map_err(|_| refuse(text, "a number beyond 64 bits is not modelled"))
}

struct Parser<'t> {
    text: &'t str,
    tokens: Vec<Token>,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn malformed(&self) -> ArithError {
        refuse(self.text, "the expression is malformed")
    }

    fn sum(&mut self) -> Result<Expr, ArithError> {
        let mut left = self.product()?;
        while let Some(Token::Op(op @ ('+' | '-'))) = self.peek().cloned() {
            self.at += 1;
            left = Expr::Binary(op, Box::new(left), Box::new(self.product()?));
        }
        Ok(left)
    }

    fn product(&mut self) -> Result<Expr, ArithError> {
        let mut left = self.unary()?;
        while let Some(Token::Op(op @ ('*' | '/' | '%'))) = self.peek().cloned() {
            self.at += 1;
            left = Expr::Binary(op, Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ArithError> {
        match self.peek().cloned() {
            Some(Token::Op('+')) => {
                self.at += 1;
                self.unary()
            }
            Some(Token::Op('-')) => {
                self.at += 1;
                Ok(Expr::Negate(Box::new(self.unary()?)))
            }
            Some(Token::Number(n)) => {
                self.at += 1;
                Ok(Expr::Number(n))
            }
            Some(Token::Name(name)) => {
                self.at += 1;
                Ok(Expr::Var(name))
            }
            Some(Token::Op('(')) => {
                self.at += 1;
                let inner = self.sum()?;
                if self.peek() != Some(&Token::Op(')')) {
                    return Err(self.malformed());
                }
                self.at += 1;
                Ok(inner)
            }
            _ => Err(self.malformed()),
        }
    }
}

/// The value of arithmetic `text` (its `$` expansions already done); `var` gives a
/// variable's value, `None` when unset.
pub(super) fn eval(
    text: &str,
    var: &dyn Fn(&str) -> Result<Option<String>, Unmodelled>,
) -> Result<i64, ArithError> {
    let mut parser = Parser {
        text,
        tokens: tokens(text)?,
        at: 0,
    };
    let expr = parser.sum()?;
    if parser.at != parser.tokens.len() {
        return Err(parser.malformed());
    }
    value(text, &expr, var)
}

fn value(
    text: &str,
    expr: &Expr,
    var: &dyn Fn(&str) -> Result<Option<String>, Unmodelled>,
) -> Result<i64, ArithError> {
    let overflow = || refuse(text, "overflow is not modelled (shells wrap or crash)");
    match expr {
        Expr::Number(n) => Ok(*n),
        Expr::Var(name) => {
            let Some(content) = var(name)? else {
                return Ok(0);
            };
            if content.is_empty() {
                return Ok(0);
            }
            let digits = content.strip_prefix('-').unwrap_or(&content);
            let canonical = !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && (digits == "0" || !digits.starts_with('0'))
                && content != "-0";
            if !canonical {
                return Err(ArithError::Refused(Unmodelled::new(
                    format!("`{name}={content}` in `$(({text}))`"),
                    "a variable in arithmetic must hold a decimal integer (dash and bash read \
                     other values differently)",
                )));
            }
            content.parse().map_err(|_| overflow())
        }
        Expr::Negate(inner) => value(text, inner, var)?.checked_neg().ok_or_else(overflow),
        Expr::Binary(op, left, right) => {
            let (a, b) = (value(text, left, var)?, value(text, right, var)?);
            if matches!(op, '/' | '%') && b == 0 {
                return Err(ArithError::DivisionByZero);
            }
            match op {
                '+' => a.checked_add(b),
                '-' => a.checked_sub(b),
                '*' => a.checked_mul(b),
                '/' => a.checked_div(b),
                _ => a.checked_rem(b),
            }
            .ok_or_else(overflow)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ArithError, eval};

    fn calc(text: &str) -> Result<i64, String> {
        let var = |name: &str| {
            Ok(match name {
                "N" => Some("23".to_string()),
                "NEG" => Some("-4".to_string()),
                "EMPTY" => Some(String::new()),
                "WORD" => Some("abc".to_string()),
                _ => None,
            })
        };
        eval(text, &var).map_err(|e| match e {
            ArithError::DivisionByZero => "division by zero".to_string(),
            ArithError::Refused(r) => r.to_string(),
        })
    }

    #[test]
    fn values_as_dash_computes_them() {
        assert_eq!(calc("N % 7"), Ok(2));
        assert_eq!(calc(" 2 * (3+4) "), Ok(14));
        assert_eq!(calc("-7 / 2"), Ok(-3));
        assert_eq!(calc("-7 % 3"), Ok(-1));
        assert_eq!(calc("7 % -3"), Ok(1));
        assert_eq!(calc("- -1"), Ok(1));
        assert_eq!(calc("+3"), Ok(3));
        assert_eq!(calc("NEG * N"), Ok(-92));
        assert_eq!(calc("UNSET + EMPTY + 1"), Ok(1));
        assert_eq!(calc("1 - 2 - 3"), Ok(-4));
        assert_eq!(calc("0"), Ok(0));
    }

    #[test]
    fn division_by_zero_is_the_shell_error() {
        assert_eq!(calc("1 / 0"), Err("division by zero".into()));
        assert_eq!(calc("N % (N - 23)"), Err("division by zero".into()));
    }

    #[test]
    fn refuses_what_shells_disagree_on() {
        for text in [
            "010",
            "0x10",
            "08",
            "--1",
            "1++2",
            "2 ** 3",
            "1 == 1",
            "WORD + 1",
            "9223372036854775807 + 1",
            "(-9223372036854775807 - 1) / -1",
            "99999999999999999999",
            "",
            "1 +",
            "(1",
            "1)",
            "1 2",
        ] {
            let got = calc(text);
            assert!(
                got.as_ref()
                    .is_err_and(|e| e.starts_with("the simulator does not model")),
                "{text:?} gave {got:?}"
            );
        }
    }
}
