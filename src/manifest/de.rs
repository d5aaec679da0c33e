//! Reading the typed document from the walked tree, with our own messages.
//!
//! serde_yaml reports an error at a position but in serde's words
//! (`invalid type: …`, `data did not match any variant of untagged enum`),
//! often for the parent of the field that is wrong, and not with the field's
//! path. This deserializer reads [`Tree`] instead: every node knows its path
//! and position, and serde's error hooks (`invalid_type`, `unknown_field`,
//! `missing_field`, …) are answered in the manifest's terms, so each refusal
//! names the field, where it is, and what is allowed there.
//!
//! YAML rules kept (those of serde_yaml, YAML 1.2 core schema): a plain `~`,
//! `null` or nothing is null; any scalar reads as text where text is wanted.
//! Stricter where ambiguity hurt: numbers are plain decimal digits (a
//! negative number, `-0` included, is refused), and tags are refused except
//! `!!str`.

use std::cell::Cell;
use std::fmt::{self, Display};

use serde::de::{self, DeserializeSeed, Expected, IntoDeserializer, Unexpected, Visitor};
use yaml_rust2::scanner::TScalarStyle;

use super::text::{shown, Pos, MAX_DEPTH};
use super::yaml::{join, Kind, Node, Tree, DOCUMENT};

/// How many nodes aliases may expand to in all: an alias repeats its
/// anchor's whole subtree, so a few aliases could otherwise stand for
/// millions of nodes.
pub const MAX_EXPANDED: usize = 10_000;

/// A refusal from reading the typed document.
#[derive(Debug)]
pub(crate) struct DeError {
    /// The field path, once known.
    pub path: Option<String>,
    /// Where, once known.
    pub pos: Option<Pos>,
    /// What was found and what is allowed.
    pub message: String,
    /// A required field that is absent (its path is the mapping's plus it).
    missing: Option<&'static str>,
}

impl DeError {
    fn new(message: String) -> Self {
        Self { path: None, pos: None, message, missing: None }
    }

    /// Places an error that does not know its field yet at `path`/`pos`.
    fn at(mut self, path: &str, pos: Pos) -> Self {
        if self.path.is_none() {
            let path = match self.missing {
                Some(field) => join(path, field),
                None if path.is_empty() => DOCUMENT.to_string(),
                None => path.to_string(),
            };
            self.path = Some(path);
            self.pos = Some(pos);
        }
        self
    }
}

impl Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

/// What was found, in the manifest's terms.
fn found(u: &Unexpected<'_>) -> String {
    match u {
        Unexpected::Bool(b) => format!("`{b}`"),
        Unexpected::Unsigned(n) => format!("the number `{n}`"),
        Unexpected::Signed(n) => format!("the number `{n}`"),
        Unexpected::Float(n) => format!("the number `{n}`"),
        Unexpected::Str(s) => format!("`{}`", shown(s)),
        Unexpected::Unit => "no value".to_string(),
        Unexpected::Seq => "a list".to_string(),
        Unexpected::Map => "a mapping".to_string(),
        other => other.to_string(),
    }
}

/// `` `a`, `b`, `c` ``.
fn list(items: &[&str]) -> String {
    items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}

impl de::Error for DeError {
    fn custom<T: Display>(msg: T) -> Self {
        Self::new(msg.to_string())
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        Self::new(format!("found {}; allowed: {exp}", found(&unexp)))
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        Self::invalid_type(unexp, exp)
    }

    fn invalid_length(len: usize, exp: &dyn Expected) -> Self {
        Self::new(format!("found {len} entries; allowed: {exp}"))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::new(format!("`{}` is not allowed here; allowed: one of {}", shown(variant), list(expected)))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::new(format!("unknown field `{}`; allowed: {}", shown(field), list(expected)))
    }

    fn missing_field(field: &'static str) -> Self {
        let mut e =
            Self::new(format!("the required field `{field}` is missing; allowed: add `{field}: …` here"));
        e.missing = Some(field);
        e
    }

    fn duplicate_field(field: &'static str) -> Self {
        Self::new(format!("`{field}` is given twice; allowed: each field once"))
    }
}

/// Reads `T` from the tree's root (or from an empty mapping when the
/// document has none, which the caller refuses first).
pub(crate) fn from_tree<'de, T: de::Deserialize<'de>>(tree: &Tree) -> Result<T, DeError> {
    let Some(root) = tree.root else {
        return Err(DeError::new("the manifest is empty".into()).at("", Pos { line: 1, column: 1 }));
    };
    let budget = Cell::new(0);
    T::deserialize(De { tree, node: root, path: String::new(), depth: 0, aliased: false, budget: &budget })
}

/// A deserializer positioned at one node, with the path it is read under
/// (through an alias: the alias's path, the anchor's text).
struct De<'t> {
    tree: &'t Tree,
    node: usize,
    path: String,
    depth: usize,
    aliased: bool,
    budget: &'t Cell<usize>,
}

impl<'t> De<'t> {
    fn raw(&self) -> &'t Node {
        &self.tree.nodes[self.node]
    }

    fn pos(&self) -> Pos {
        self.raw().first.pos
    }

    fn fail(&self, message: String) -> DeError {
        DeError::new(message).at(&self.path, self.pos())
    }

    /// Follows aliases to the node that holds the value, counting what
    /// aliases expand to.
    fn resolve(mut self) -> Result<(Self, &'t Node), DeError> {
        if self.depth > MAX_DEPTH {
            return Err(self.fail(format!(
                "nesting deeper than {MAX_DEPTH} levels (through aliases); allowed: at most {MAX_DEPTH} (a manifest needs about 6)"
            )));
        }
        while let Kind::Alias(target) = self.raw().kind {
            self.aliased = true;
            self.node = target;
        }
        if self.aliased {
            self.budget.set(self.budget.get() + 1);
            if self.budget.get() > MAX_EXPANDED {
                return Err(self.fail(format!(
                    "aliases (`*name`) expand to more than {MAX_EXPANDED} values; refusing a possible alias bomb; allowed: at most {MAX_EXPANDED}"
                )));
            }
        }
        let node = self.raw();
        Ok((self, node))
    }

    fn child(&self, node: usize, path: String) -> De<'t> {
        De { tree: self.tree, node, path, depth: self.depth + 1, aliased: self.aliased, budget: self.budget }
    }

    /// The text of a scalar that may be read as text (untagged or `!!str`).
    fn text(&self, node: &'t Node) -> Option<&'t str> {
        match &node.kind {
            Kind::Scalar { value, tag: None, .. } => Some(value),
            Kind::Scalar { value, tag: Some(t), .. } if is_str_tag(t) => Some(value),
            _ => None,
        }
    }

    /// The refusal for a node that is not what `exp` wants.
    fn wrong(&self, node: &Node, exp: &dyn Expected) -> DeError {
        let message = match &node.kind {
            Kind::Scalar { tag: Some(t), .. } if !is_str_tag(t) => {
                format!("found the tag `{}{}`; allowed: {exp}, without a tag", t.handle, t.suffix)
            }
            Kind::Scalar { .. } if node.is_null() => format!("found no value; allowed: {exp}"),
            Kind::Scalar { value, .. } => {
                format!("found `{}`; allowed: {exp}", shown(value))
            }
            Kind::Seq(_) => format!("found a list; allowed: {exp}"),
            Kind::Map(_) => format!("found a mapping; allowed: {exp}"),
            Kind::Alias(_) => format!("found an alias; allowed: {exp}"),
        };
        self.fail(message)
    }

    fn unsigned(self, max: u64) -> Result<u64, DeError> {
        let (de, node) = self.resolve()?;
        let allowed = format!("a whole number from 0 to {max}");
        let text = match &node.kind {
            Kind::Scalar { value, style: TScalarStyle::Plain, tag: None } => value,
            Kind::Scalar { value, tag: None, .. } => {
                return Err(de.fail(format!(
                    "found the text `{}` in quotes; allowed: {allowed}, unquoted",
                    shown(value)
                )))
            }
            _ => return Err(de.wrong(node, &allowed.as_str())),
        };
        if text.starts_with('-') {
            return Err(de.fail(format!("`{}` is negative; allowed: {allowed}", shown(text))));
        }
        // Decimal digits only: `+1`, `0x10`, `1_000` are YAML 1.1 or 1.2
        // spellings a reader of the file may not expect.
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(de.wrong(node, &allowed.as_str()));
        }
        match text.parse::<u64>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(de.fail(format!("`{}` is out of range; allowed: {allowed}", shown(text)))),
        }
    }
}

fn is_str_tag(t: &yaml_rust2::parser::Tag) -> bool {
    matches!(t.handle.as_str(), "!!" | "tag:yaml.org,2002:") && t.suffix == "str"
}

macro_rules! unsigned {
    ($($method:ident => $ty:ty, $visit:ident;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let (path, pos) = (self.path.clone(), self.pos());
            let n = self.unsigned(<$ty>::MAX as u64)?;
            visitor.$visit(n as $ty).map_err(|e: DeError| e.at(&path, pos))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for De<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (de, node) = self.resolve()?;
        let (path, pos) = (de.path.clone(), de.pos());
        let result = match &node.kind {
            Kind::Seq(_) => return de.deserialize_seq(visitor),
            Kind::Map(_) => return de.deserialize_map(visitor),
            _ if node.is_null() => visitor.visit_unit(),
            Kind::Scalar { value, style: TScalarStyle::Plain, tag: None } => match value.as_str() {
                "true" | "True" | "TRUE" => visitor.visit_bool(true),
                "false" | "False" | "FALSE" => visitor.visit_bool(false),
                v if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => match v.parse::<u64>() {
                    Ok(n) => visitor.visit_u64(n),
                    Err(_) => visitor.visit_str(v),
                },
                v => visitor.visit_str(v),
            },
            _ => match de.text(node) {
                Some(t) => visitor.visit_str(t),
                None => return Err(de.wrong(node, &visitor)),
            },
        };
        result.map_err(|e: DeError| e.at(&path, pos))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (de, node) = self.resolve()?;
        let value = match &node.kind {
            Kind::Scalar { value, style: TScalarStyle::Plain, tag: None } => match value.as_str() {
                "true" | "True" | "TRUE" => Some(true),
                "false" | "False" | "FALSE" => Some(false),
                _ => None,
            },
            _ => None,
        };
        match value {
            Some(b) => visitor.visit_bool(b).map_err(|e: DeError| e.at(&de.path, de.pos())),
            None => Err(de.wrong(node, &"`true` or `false`")),
        }
    }

    unsigned! {
        deserialize_u8 => u8, visit_u8;
        deserialize_u16 => u16, visit_u16;
        deserialize_u32 => u32, visit_u32;
        deserialize_u64 => u64, visit_u64;
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (de, node) = self.resolve()?;
        match de.text(node) {
            Some(t) if !node.is_null() => visitor.visit_str(t).map_err(|e: DeError| e.at(&de.path, de.pos())),
            _ => Err(de.wrong(node, &visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (de, node) = self.resolve()?;
        if node.is_null() {
            return visitor.visit_none().map_err(|e: DeError| e.at(&de.path, de.pos()));
        }
        visitor.visit_some(de)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (de, node) = self.resolve()?;
        let (path, pos) = (de.path.clone(), de.pos());
        let items: &[usize] = match &node.kind {
            Kind::Seq(items) => items,
            _ if node.is_null() => &[],
            _ => return Err(de.wrong(node, &"a list (`- item` lines or `[a, b]`)")),
        };
        let access = Items { de: &de, items: items.iter().enumerate() };
        visitor.visit_seq(access).map_err(|e: DeError| e.at(&path, pos))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_struct("", &[], visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let (de, node) = self.resolve()?;
        let (path, pos) = (de.path.clone(), de.pos());
        let pairs: &[(usize, usize)] = match &node.kind {
            Kind::Map(pairs) => pairs,
            _ if node.is_null() => &[],
            _ if fields.is_empty() => return Err(de.wrong(node, &"a mapping (`key: value`)")),
            _ => return Err(de.wrong(node, &format!("a mapping with the fields {}", list(fields)).as_str())),
        };
        let access = Pairs { de: &de, pairs: pairs.iter(), value: None };
        visitor.visit_map(access).map_err(|e: DeError| e.at(&path, pos))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let (de, node) = self.resolve()?;
        let (path, pos) = (de.path.clone(), de.pos());
        let single = match &node.kind {
            Kind::Map(pairs) if pairs.len() == 1 => Some(pairs[0]),
            Kind::Scalar { .. } if de.text(node).is_some() && !node.is_null() => None,
            _ => {
                return Err(de.wrong(
                    node,
                    &format!("one of {}, or a mapping with a single key such as `{{http: {{port: 8080}}}}` where settings are needed", list(variants)).as_str(),
                ))
            }
        };
        let access = Variant { de: &de, single };
        visitor.visit_enum(access).map_err(|e: DeError| e.at(&path, pos))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u128 f32 f64 char bytes byte_buf unit unit_struct tuple tuple_struct
    }
}

/// A sequence's items.
struct Items<'a, 't, I> {
    de: &'a De<'t>,
    items: I,
}

impl<'de, 'a, 't, I: Iterator<Item = (usize, &'a usize)>> de::SeqAccess<'de> for Items<'a, 't, I> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some((i, &node)) => {
                // The child's path and position go on any error its own
                // `Deserialize` raises after reading (a bad duration, a bad
                // pattern), not only on those raised while reading it.
                let child = self.de.child(node, format!("{}[{i}]", self.de.path));
                let (path, pos) = (child.path.clone(), child.pos());
                seed.deserialize(child).map(Some).map_err(|e| e.at(&path, pos))
            }
        }
    }
}

/// A mapping's pairs; keys are read as text.
struct Pairs<'a, 't, I> {
    de: &'a De<'t>,
    pairs: I,
    value: Option<(usize, String)>,
}

impl<'de, 'a, 't, I: Iterator<Item = &'a (usize, usize)>> de::MapAccess<'de> for Pairs<'a, 't, I> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        let Some(&(key, value)) = self.pairs.next() else { return Ok(None) };
        let node = &self.de.tree.nodes[key];
        let text = match (&node.kind, self.de.text(node)) {
            (Kind::Scalar { .. }, Some(t)) => t,
            _ => {
                return Err(DeError::new("a key that is not plain text; allowed: a field name".into())
                    .at(&self.de.path, node.start.pos))
            }
        };
        let path = join(&self.de.path, text);
        self.value = Some((value, path.clone()));
        seed.deserialize(text.into_deserializer()).map(Some).map_err(|e: DeError| e.at(&path, node.start.pos))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some((node, path)) => {
                let child = self.de.child(node, path);
                let (path, pos) = (child.path.clone(), child.pos());
                seed.deserialize(child).map_err(|e| e.at(&path, pos))
            }
            None => Err(self.de.fail("a value without a key".into())),
        }
    }
}

/// An enum written as a word (`auto`) or a single-key mapping (`{http: …}`).
struct Variant<'a, 't> {
    de: &'a De<'t>,
    single: Option<(usize, usize)>,
}

impl<'de, 'a, 't> de::EnumAccess<'de> for Variant<'a, 't> {
    type Error = DeError;
    type Variant = VariantValue<'a, 't>;

    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self::Variant), DeError> {
        let (node, value) = match self.single {
            Some((key, value)) => (key, Some(value)),
            None => (self.de.node, None),
        };
        let raw = &self.de.tree.nodes[node];
        let name = self.de.text(raw).filter(|_| matches!(raw.kind, Kind::Scalar { .. }));
        let Some(name) = name else {
            return Err(DeError::new("a key that is not plain text; allowed: a name".into())
                .at(&self.de.path, raw.start.pos));
        };
        let path = join(&self.de.path, name);
        let tag = seed
            .deserialize(name.into_deserializer())
            .map_err(|e: DeError| e.at(&self.de.path, raw.start.pos))?;
        Ok((tag, VariantValue { de: self.de, value, name: name.to_string(), path }))
    }
}

struct VariantValue<'a, 't> {
    de: &'a De<'t>,
    value: Option<usize>,
    name: String,
    path: String,
}

impl<'de> de::VariantAccess<'de> for VariantValue<'_, '_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.value {
            None => Ok(()),
            Some(v) if self.de.tree.nodes[v].is_null() => Ok(()),
            Some(_) => Err(self
                .de
                .fail(format!("`{}` takes no settings; allowed: `{}` alone", self.name, self.name))),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        match self.value {
            Some(v) => {
                let child = self.de.child(v, self.path);
                let (path, pos) = (child.path.clone(), child.pos());
                seed.deserialize(child).map_err(|e| e.at(&path, pos))
            }
            None => Err(self.needs_settings()),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Some(v) => de::Deserializer::deserialize_seq(self.de.child(v, self.path), visitor),
            None => Err(self.needs_settings()),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.value {
            Some(v) => de::Deserializer::deserialize_struct(self.de.child(v, self.path), "", fields, visitor),
            None => Err(self.needs_settings()),
        }
    }
}

impl VariantValue<'_, '_> {
    fn needs_settings(&self) -> DeError {
        self.de.fail(format!(
            "`{}` needs settings; allowed: a mapping such as `{{{}: {{port: 8080}}}}`",
            self.name, self.name
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::yaml::walk;

    /// The typed manifest stops at the first value of the wrong shape, so
    /// only a type that takes any shape can reach the budget: the
    /// classic "billion laughs", each level repeating the previous nine times.
    #[test]
    fn aliases_expanding_past_the_budget_are_refused_naming_the_path() {
        let mut text = String::from("- &a0 [lol]\n");
        for i in 1..6 {
            let refs = vec![format!("*a{}", i - 1); 9].join(", ");
            text.push_str(&format!("- &a{i} [{refs}]\n"));
        }
        let tree = walk(&text).expect("under the alias count limit");
        // serde_yaml's `Value` takes whatever shape it is given.
        let e = from_tree::<serde_yaml::Value>(&tree).expect_err("too many values");
        assert!(e.message.contains("more than 10000 values"), "{e:?}");
        // The path is where the repetition is read; the position, the
        // repeated text inside the anchored list.
        assert!(e.path.as_deref().is_some_and(|p| p.starts_with("[4][")), "{e:?}");
        assert_eq!(e.pos, Some(Pos { line: 1, column: 7 }), "{e:?}");
    }

    #[test]
    fn numbers_are_plain_unsigned_digits() {
        let read = |t: &str| from_tree::<u16>(&walk(t).expect("walks")).map_err(|e| e.message);
        assert_eq!(read("8080"), Ok(8080));
        for (text, phrase) in [
            ("-0", "`-0` is negative; allowed: a whole number from 0 to 65535"),
            ("-80", "is negative"),
            ("70000", "out of range"),
            ("'80'", "in quotes"),
            ("0x10", "found `0x10`; allowed: a whole number"),
            ("+1", "found `+1`; allowed: a whole number"),
            ("[1]", "found a list"),
            ("~", "found no value"),
        ] {
            let message = read(text).expect_err(text);
            assert!(message.contains(phrase), "{text}: {message}");
        }
    }
}
