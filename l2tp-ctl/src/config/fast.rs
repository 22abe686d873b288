//! A fast reader for the plain shape that large configuration files have:
//! one `key = value` per line, `[table]` and `[[array.of.tables]]` headers
//! with bare keys, values that are basic strings without escapes, decimal
//! integers, booleans, or one-line arrays of those, and comments.
//!
//! The `toml` crate keeps the span of every token and value for its error
//! messages; on a file of 10,000 sessions that is about 30 ms of the
//! daemon's 40 ms start-up parse (AMD EPYC), which a daemon restarting after
//! a crash pays before it can start recovering its tunnels. This reader
//! builds the same tree with none of that, borrowing every key and string
//! from the text, and is itself a serde deserializer. It answers `None` for anything
//! outside the plain shape and for anything TOML forbids (a key or table
//! defined twice, a table header over a value), and the caller then parses
//! the file with `toml`, which gives the real error with its line. So it
//! never decides whether a file is valid, only reads the valid plain ones
//! faster; `tests::fast_reader_agrees_with_toml` compares the two.

use serde::de::{self, value::BorrowedStrDeserializer, IntoDeserializer, Visitor};

/// Errors of deserializing the tree: never shown, the file is then read by
/// `toml`, whose error is.
pub(super) type Error = de::value::Error;

/// Tables with more keys than this are left to `toml` (keys are looked up
/// by a linear scan, which is the fastest for the handful a table has).
const MAX_KEYS: usize = 64;

/// The whole file, as its root table, or `None` when `toml` has to read it.
pub(super) fn parse(text: &str) -> Option<Tbl<'_>> {
    // A carriage return must be followed by a newline (TOML's `newline`),
    // also at the very end, where `split` leaves it on the last line.
    if text.ends_with('\r') {
        return None;
    }
    let mut root = Tbl::default();
    // The table that `key = value` lines go into: its path from the root
    // (an array of tables stands for its last element).
    let mut current: Vec<&str> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = line.trim_matches(is_ws);
        if line.is_empty() {
            continue;
        }
        match line.as_bytes()[0] {
            b'#' => comment(line)?,
            b'[' => {
                let (array, rest) = match line.strip_prefix("[[") {
                    Some(rest) => (true, rest),
                    None => (false, &line[1..]),
                };
                let close = find(rest, b']')?;
                let after = &rest[close..];
                let after = if array { after.strip_prefix("]]")? } else { &after[1..] };
                end_of_line(after)?;
                current.clear();
                current.extend(rest[..close].split('.'));
                if !current.iter().all(|k| is_bare_key(k)) {
                    return None;
                }
                root.open(&current, array)?;
            }
            _ => {
                let eq = find(line, b'=')?;
                let key = line[..eq].trim_end_matches(is_ws);
                if !is_bare_key(key) {
                    return None;
                }
                let (value, rest) = value(line[eq + 1..].trim_start_matches(is_ws))?;
                end_of_line(rest)?;
                root.at(&current)?.insert(key, value)?;
            }
        }
    }
    Some(root)
}

#[derive(Debug)]
enum Node<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
    Array(Vec<Node<'a>>),
    Table(Tbl<'a>),
    /// An array of tables (`[[...]]`).
    Tables(Vec<Tbl<'a>>),
}

#[derive(Debug, Default)]
pub(super) struct Tbl<'a> {
    entries: Vec<(&'a str, Node<'a>)>,
    /// Defined by its own header (not only as a prefix of another's).
    explicit: bool,
}

impl<'a> Tbl<'a> {
    fn get(&mut self, key: &str) -> Option<&mut Node<'a>> {
        self.entries.iter_mut().find(|(k, _)| *k == key).map(|(_, n)| n)
    }

    /// A new key; `None` if it is there already (TOML: defined twice).
    fn insert(&mut self, key: &'a str, node: Node<'a>) -> Option<()> {
        if self.entries.len() >= MAX_KEYS || self.get(key).is_some() {
            return None;
        }
        self.entries.push((key, node));
        Some(())
    }

    /// The table under `key`: a table, or the last of an array of tables.
    fn child(&mut self, key: &str) -> Option<&mut Tbl<'a>> {
        match self.get(key)? {
            Node::Table(t) => Some(t),
            Node::Tables(ts) => ts.last_mut(),
            _ => None,
        }
    }

    /// The table at `path`, through the last element of any array of
    /// tables on the way.
    fn at(&mut self, path: &[&str]) -> Option<&mut Tbl<'a>> {
        path.iter().try_fold(self, |t, key| t.child(key))
    }

    /// A `[path]` or `[[path]]` header: the tables before its last key are
    /// made as needed, then its own table is defined or appended.
    fn open(&mut self, path: &[&'a str], array: bool) -> Option<()> {
        let (last, parents) = path.split_last()?;
        let mut t = self;
        for key in parents {
            if t.get(key).is_none() {
                t.insert(key, Node::Table(Tbl::default()))?;
            }
            t = t.child(key)?;
        }
        let new = Tbl { entries: Vec::with_capacity(8), explicit: true };
        match (t.get(last), array) {
            (None, false) => t.insert(last, Node::Table(new)),
            (None, true) => t.insert(last, Node::Tables(vec![new])),
            (Some(Node::Table(t)), false) if !t.explicit => {
                t.explicit = true;
                Some(())
            }
            (Some(Node::Tables(ts)), true) => {
                ts.push(new);
                Some(())
            }
            _ => None,
        }
    }

    /// The tree as `toml` would have given it (to compare the two).
    #[cfg(test)]
    pub(super) fn into_table(self) -> toml::Table {
        self.entries.into_iter().map(|(k, n)| (k.to_owned(), n.into_value())).collect()
    }
}

#[cfg(test)]
impl Node<'_> {
    fn into_value(self) -> toml::Value {
        use toml::Value;
        match self {
            Node::Str(s) => Value::String(s.to_owned()),
            Node::Int(i) => Value::Integer(i),
            Node::Bool(b) => Value::Boolean(b),
            Node::Array(a) => Value::Array(a.into_iter().map(Node::into_value).collect()),
            Node::Table(t) => Value::Table(t.into_table()),
            Node::Tables(ts) => Value::Array(ts.into_iter().map(|t| Value::Table(t.into_table())).collect()),
        }
    }
}

/// The first `b` in `s` (an ASCII byte, so a char boundary).
fn find(s: &str, b: u8) -> Option<usize> {
    s.bytes().position(|c| c == b)
}

fn is_ws(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_bare_key(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A comment: anything but control characters (tab aside).
fn comment(c: &str) -> Option<()> {
    c.chars().all(|c| c == '\t' || !(c.is_ascii_control())).then_some(())
}

/// What may follow a value or a header: nothing, or a comment.
fn end_of_line(rest: &str) -> Option<()> {
    let rest = rest.trim_start_matches(is_ws);
    if rest.is_empty() {
        Some(())
    } else if rest.starts_with('#') {
        comment(rest)
    } else {
        None
    }
}

/// One value at the start of `s`, and what follows it.
fn value(s: &str) -> Option<(Node<'_>, &str)> {
    match s.as_bytes().first()? {
        b'"' => {
            let body = &s[1..];
            let close = find(body, b'"')?;
            let content = &body[..close];
            // An empty string might open a multi-line one (`"""`).
            if content.is_empty() && body[1..].starts_with('"') {
                return None;
            }
            if content.chars().any(|c| c == '\\' || (c != '\t' && c.is_ascii_control())) {
                return None;
            }
            Some((Node::Str(content), &body[close + 1..]))
        }
        b'[' => {
            let mut items = Vec::new();
            let mut rest = s[1..].trim_start_matches(is_ws);
            loop {
                if let Some(after) = rest.strip_prefix(']') {
                    return Some((Node::Array(items), after));
                }
                if rest.starts_with('[') {
                    return None;
                }
                let (v, after) = value(rest)?;
                items.push(v);
                let after = after.trim_start_matches(is_ws);
                rest = match after.strip_prefix(',') {
                    Some(a) => a.trim_start_matches(is_ws),
                    None if after.starts_with(']') => after,
                    None => return None,
                };
            }
        }
        b't' | b'f' => {
            let end = s.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(s.len());
            let b = match &s[..end] {
                "true" => true,
                "false" => false,
                _ => return None,
            };
            Some((Node::Bool(b), &s[end..]))
        }
        _ => {
            let end = s.find(|c: char| !(c.is_ascii_digit() || c == '+' || c == '-')).unwrap_or(s.len());
            let (num, rest) = s.split_at(end);
            // What else could follow (a `.`, `e`, `_`, `:`, a letter) makes
            // it a float, a date or a mistake: `toml`'s to read.
            if !(rest.is_empty() || rest.starts_with([' ', '\t', '#', ',', ']'])) {
                return None;
            }
            let digits = num.strip_prefix(['+', '-']).unwrap_or(num);
            if digits.is_empty()
                || !digits.bytes().all(|b| b.is_ascii_digit())
                || (digits.len() > 1 && digits.starts_with('0'))
            {
                return None;
            }
            Some((Node::Int(num.parse().ok()?), rest))
        }
    }
}

// The tree as serde input, the way `toml` presents a document: a present
// key is `Some`, a string names a unit variant, a table is a map.

impl<'de> de::Deserializer<'de> for Node<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match self {
            Node::Str(s) => v.visit_borrowed_str(s),
            Node::Int(i) => v.visit_i64(i),
            Node::Bool(b) => v.visit_bool(b),
            Node::Array(a) => v.visit_seq(de::value::SeqDeserializer::new(a.into_iter())),
            Node::Table(t) => t.deserialize_any(v),
            Node::Tables(ts) => v.visit_seq(de::value::SeqDeserializer::new(ts.into_iter())),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        match self {
            Node::Str(s) => BorrowedStrDeserializer::<Error>::new(s).deserialize_enum(name, variants, v),
            other => other.deserialize_any(v),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

impl<'de> IntoDeserializer<'de, Error> for Node<'de> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> de::Deserializer<'de> for Tbl<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_map(de::value::MapDeserializer::new(
            self.entries.into_iter().map(|(k, n)| (BorrowedStrDeserializer::<Error>::new(k), n)),
        ))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string option newtype_struct enum
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

impl<'de> IntoDeserializer<'de, Error> for Tbl<'de> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}
