//! Which attributes the loaded policies can read, so a decision builds only those.
//!
//! A Cedar policy reads an attribute only by naming it: `x.name`, `x["name"]` or `x has name`.
//! An attribute no policy names cannot change an answer, so leaving it out of the entities and
//! the context gives the answer Cedar gives with it. The one exception is `context` used whole
//! (`context == {...}`, `context in ...`): then every context key is given. The names are
//! collected from each policy's JSON form (Cedar's EST), whatever expression they are read from,
//! so the set is never smaller than what is read.

use std::collections::HashSet;

use cedar_policy::PolicySet;
use serde_json::Value;

/// The attribute names the policies name, and whether one of them uses `context` whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    names: HashSet<String>,
    whole_context: bool,
    /// A policy could not be read as JSON: every attribute is given.
    everything: bool,
}

impl Reads {
    /// What the policies of `set` read.
    pub fn of(set: &PolicySet) -> Self {
        let mut reads = Self::default();
        for policy in set.policies() {
            match policy.to_json() {
                Ok(json) => reads.walk(&json),
                Err(_) => reads.everything = true,
            }
        }
        reads
    }

    /// Every attribute and context key, whatever the policies read (for comparisons in tests).
    #[cfg(test)]
    pub fn everything() -> Self {
        Self {
            everything: true,
            ..Self::default()
        }
    }

    /// Whether an entity attribute called `name` must be given.
    pub fn attribute(&self, name: &str) -> bool {
        self.everything || self.names.contains(name)
    }

    /// Whether the context key `name` must be given.
    pub fn context_key(&self, name: &str) -> bool {
        self.everything || self.whole_context || self.names.contains(name)
    }

    fn walk(&mut self, v: &Value) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| self.walk(i)),
            Value::Object(map) => {
                if is_context(v) {
                    self.whole_context = true;
                }
                for (key, inner) in map {
                    let access = (key == "." || key == "has")
                        .then(|| inner.get("attr").and_then(Value::as_str))
                        .flatten();
                    match access {
                        Some(attr) => {
                            self.names.insert(attr.to_string());
                            // `context.x` reads one key, not the whole record.
                            match inner.get("left") {
                                Some(left) if is_context(left) => {}
                                Some(left) => self.walk(left),
                                None => {}
                            }
                        }
                        None => self.walk(inner),
                    }
                }
            }
            _ => {}
        }
    }
}

fn is_context(v: &Value) -> bool {
    v.get("Var").and_then(Value::as_str) == Some("context")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn reads(text: &str) -> Reads {
        Reads::of(&PolicySet::from_str(text).unwrap())
    }

    #[test]
    fn the_names_read_are_collected_from_every_form_of_access() {
        let r = reads(
            r#"forbid(principal, action, resource) when { resource.conflicts.containsAny(context.held) };
               permit(principal, action, resource) when { principal has department && principal["title"] == "x" };"#,
        );
        for name in ["conflicts", "held", "department", "title"] {
            assert!(r.attribute(name) && r.context_key(name), "{name}");
        }
        assert!(!r.context_key("reason_length") && !r.attribute("risk_level"));
    }

    #[test]
    fn context_used_whole_gives_every_key() {
        for text in [
            r#"permit(principal, action, resource) when { context == {"a": 1} };"#,
            r#"permit(principal, action, resource) when { [context].contains({"a": 1}) };"#,
        ] {
            let r = reads(text);
            assert!(r.context_key("reason_length"), "{text}");
            assert!(!r.attribute("risk_level"), "{text}");
        }
        // A nested read through `context` is still one key.
        let r = reads(r#"permit(principal, action, resource) when { context.rec.inner == 1 };"#);
        assert!(r.context_key("rec") && !r.context_key("held"));
    }

    #[test]
    fn no_policy_reads_nothing() {
        let r = reads("permit(principal, action, resource);");
        assert!(!r.attribute("email") && !r.context_key("held"));
    }
}
