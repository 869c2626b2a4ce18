//! Rust types to wire types ([`Ty`]): primitives, the standard collections and smart pointers,
//! the UUID and date-time types of `uuid`, `chrono` and `time`, `serde_json::Value`, aliases and
//! the crate's own structs and enums (as references to definitions).

use quote::ToTokens;
use serde_json::Value;

use super::index::{Item, Target};
use super::{Builder, Ctx};
use crate::model::Ty;

/// The placeholder name of a reference to type item `index`, until definitions are named.
pub(crate) fn placeholder(index: usize) -> String {
    format!("#{index}")
}

/// The type item of a placeholder.
pub(crate) fn placeholder_index(name: &str) -> Option<usize> {
    name.strip_prefix('#')?.parse().ok()
}

/// A type as written, compactly: `BTreeMap<String, Vec<Line>>`.
pub(crate) fn type_string(ty: &impl ToTokens) -> String {
    let raw = ty.to_token_stream().to_string();
    let tokens: Vec<&str> = raw.split_whitespace().collect();
    let mut out = String::with_capacity(raw.len());
    for (i, token) in tokens.iter().enumerate() {
        if i > 0 {
            let prev = tokens[i - 1];
            let tight_before = token.starts_with(['<', '>', ',', ';', ':', ')', ']']);
            let tight_after = prev.ends_with(['<', ':', '&', '(', '[']);
            if !tight_before && !tight_after {
                out.push(' ');
            }
        }
        out.push_str(token);
    }
    out
}

/// Whether serde treats a missing field of this type as `None`: the type is written `Option<..>`.
pub(crate) fn is_option(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Path(p) => {
            p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.ident == "Option")
        }
        syn::Type::Group(g) => is_option(&g.elem),
        syn::Type::Paren(p) => is_option(&p.elem),
        _ => false,
    }
}

/// The value `Default::default()` gives a type, when it is a known literal.
pub(crate) fn default_literal(ty: &Ty) -> Option<Value> {
    Some(match ty {
        Ty::Bool => Value::Bool(false),
        Ty::Integer { .. } => Value::from(0),
        Ty::Float { .. } => Value::from(0.0),
        Ty::String { format: None } => Value::String(String::new()),
        Ty::Option { .. } | Ty::Unit => Value::Null,
        Ty::Seq { .. } => Value::Array(Vec::new()),
        Ty::Map { .. } => Value::Object(serde_json::Map::new()),
        _ => return None,
    })
}

fn int(name: &str) -> Option<Ty> {
    let (signed, bits) = match name.as_bytes().first()? {
        b'i' => (true, &name[1..]),
        b'u' => (false, &name[1..]),
        _ => return None,
    };
    let bits = match bits {
        "size" => 64,
        other => other
            .parse()
            .ok()
            .filter(|b| [8, 16, 32, 64, 128].contains(b))?,
    };
    Some(Ty::Integer { bits, signed })
}

fn string(format: &str) -> Ty {
    Ty::String {
        format: Some(format.to_owned()),
    }
}

/// Serializers named by `#[serde(with = "...")]` whose output is known.
pub(crate) fn with_ty(with: &str) -> Option<Ty> {
    let with = with.trim_start_matches("::");
    let option = |ty: Ty| Ty::Option {
        inner: Box::new(ty),
    };
    let timestamp = Ty::Integer {
        bits: 64,
        signed: true,
    };
    Some(match with {
        "time::serde::rfc3339" => string("date-time"),
        "time::serde::rfc3339::option" => option(string("date-time")),
        "chrono::serde::ts_seconds"
        | "chrono::serde::ts_milliseconds"
        | "chrono::serde::ts_microseconds"
        | "chrono::serde::ts_nanoseconds" => timestamp,
        "chrono::serde::ts_seconds_option"
        | "chrono::serde::ts_milliseconds_option"
        | "chrono::serde::ts_microseconds_option"
        | "chrono::serde::ts_nanoseconds_option" => option(timestamp),
        "humantime_serde" => Ty::String { format: None },
        _ => return None,
    })
}

impl Builder<'_> {
    /// The wire type of `ty`, written in `cx.module`. `field` names the field in warnings.
    pub(crate) fn ty(&mut self, cx: &Ctx, ty: &syn::Type, field: &str) -> Ty {
        match ty {
            syn::Type::Reference(r) => self.ty(cx, &r.elem, field),
            syn::Type::Paren(p) => self.ty(cx, &p.elem, field),
            syn::Type::Group(g) => self.ty(cx, &g.elem, field),
            syn::Type::Tuple(t) if t.elems.is_empty() => Ty::Unit,
            syn::Type::Tuple(t) => Ty::Tuple {
                items: t.elems.iter().map(|e| self.ty(cx, e, field)).collect(),
            },
            syn::Type::Array(a) => {
                let items = Box::new(self.ty(cx, &a.elem, field));
                match &a.len {
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Int(n),
                        ..
                    }) => match n.base10_parse() {
                        Ok(len) => Ty::Array { items, len },
                        Err(_) => Ty::Seq {
                            items,
                            unique: false,
                        },
                    },
                    _ => Ty::Seq {
                        items,
                        unique: false,
                    },
                }
            }
            syn::Type::Slice(s) => Ty::Seq {
                items: Box::new(self.ty(cx, &s.elem, field)),
                unique: false,
            },
            syn::Type::Path(p) if p.qself.is_none() => self.path_ty(cx, &p.path, field),
            other => self.unresolved(cx, field, &type_string(other), None),
        }
    }

    fn path_ty(&mut self, cx: &Ctx, path: &syn::Path, field: &str) -> Ty {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        let args: Vec<&syn::Type> = match path.segments.last().map(|s| &s.arguments) {
            Some(syn::PathArguments::AngleBracketed(a)) => a
                .args
                .iter()
                .filter_map(|arg| match arg {
                    syn::GenericArgument::Type(t) => Some(t),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        if segments == ["Self"] {
            return Ty::Ref {
                name: placeholder(cx.item),
            };
        }
        let target = self.index.resolve(cx.module, &segments);
        let full = self.index.target_path(&target);
        if let Some(schema) = self.type_schema(&full, &segments) {
            return Ty::Schema { schema };
        }
        let written = type_string(path);
        match target {
            Target::Item(Item::Type(i)) => {
                let generics = &self.index.loaded.types[i].input.generics;
                if generics.type_params().next().is_some()
                    || generics.const_params().next().is_some()
                {
                    return self.unresolved(
                        cx,
                        field,
                        &written,
                        Some("generic types are not resolved"),
                    );
                }
                Ty::Ref {
                    name: placeholder(i),
                }
            }
            Target::Item(Item::Alias(a)) => {
                let alias = &self.index.loaded.aliases[a];
                if alias.generic {
                    return self.unresolved(
                        cx,
                        field,
                        &written,
                        Some("generic aliases are not resolved"),
                    );
                }
                if self.alias_stack.contains(&a) {
                    return self.unresolved(
                        cx,
                        field,
                        &written,
                        Some("the alias refers to itself"),
                    );
                }
                self.alias_stack.push(a);
                let alias_cx = Ctx {
                    module: alias.module,
                    ..cx.clone()
                };
                let ty = self.ty(&alias_cx, &alias.ty, field);
                self.alias_stack.pop();
                ty
            }
            Target::External(full) => match self.well_known(cx, &full, &args, field) {
                Some(ty) => ty,
                None => self.unresolved(cx, field, &written, None),
            },
        }
    }

    /// A schema given with `Config::type_schema` for this path (matched on its last segments).
    fn type_schema(&self, full: &[String], written: &[String]) -> Option<Value> {
        self.type_schemas.iter().find_map(|(key, schema)| {
            let key: Vec<&str> = key.trim_start_matches("::").split("::").collect();
            let matches = |path: &[String]| {
                path.len() >= key.len()
                    && path[path.len() - key.len()..]
                        .iter()
                        .zip(&key)
                        .all(|(a, b)| a == b)
            };
            (matches(full) || matches(written)).then(|| schema.clone())
        })
    }

    fn well_known(
        &mut self,
        cx: &Ctx,
        full: &[String],
        args: &[&syn::Type],
        field: &str,
    ) -> Option<Ty> {
        let last = full.last()?.as_str();
        let first = full.first().map(String::as_str);
        let std_like = |path: &[String]| {
            path.len() == 1
                || matches!(
                    path.first().map(String::as_str),
                    Some("std" | "core" | "alloc")
                )
        };
        let arg = |b: &mut Self, i: usize| -> Option<Ty> { Some(b.ty(cx, args.get(i)?, field)) };
        Some(match last {
            "String" | "str" => Ty::String { format: None },
            "char" => Ty::Char,
            "bool" => Ty::Bool,
            "f32" => Ty::Float { bits: 32 },
            "f64" => Ty::Float { bits: 64 },
            name if name.starts_with("NonZero") => {
                int(&name["NonZero".len()..].to_ascii_lowercase())?
            }
            name if int(name).is_some() => int(name)?,
            "Option" => Ty::Option {
                inner: Box::new(arg(self, 0)?),
            },
            "Vec" | "VecDeque" | "LinkedList" | "BinaryHeap" => Ty::Seq {
                items: Box::new(arg(self, 0)?),
                unique: false,
            },
            "HashSet" | "BTreeSet" | "IndexSet" => Ty::Seq {
                items: Box::new(arg(self, 0)?),
                unique: true,
            },
            "HashMap" | "BTreeMap" | "IndexMap" => {
                let key = arg(self, 0)?;
                let values = arg(self, 1)?;
                if !matches!(key, Ty::String { .. } | Ty::Char | Ty::Integer { .. }) {
                    self.note(
                        cx,
                        field,
                        format!(
                            "a map whose keys are not strings or integers cannot be written as a JSON object (key type {})",
                            args.first().map(type_string).unwrap_or_default()
                        ),
                        false,
                    );
                }
                Ty::Map {
                    key: Box::new(key),
                    values: Box::new(values),
                }
            }
            "Box" | "Rc" | "Arc" | "Cow" => arg(self, 0)?,
            "Uuid" => string("uuid"),
            "DateTime" | "NaiveDateTime" => string("date-time"),
            "NaiveDate" => string("date"),
            "NaiveTime" => string("time"),
            "OffsetDateTime" | "UtcDateTime" | "PrimitiveDateTime" => {
                self.note(
                    cx,
                    field,
                    format!(
                        "`time::{last}` is not written as RFC 3339 by its own Serialize impl (a tuple, or with `serde-human-readable` a custom text form), but the schema says `date-time`; add #[serde(with = \"time::serde::rfc3339\")] to the field"
                    ),
                    false,
                );
                string("date-time")
            }
            "Date" if first == Some("time") => string("date"),
            "Duration" if std_like(full) => Ty::Duration,
            "Value" if first == Some("serde_json") || full.len() == 1 => Ty::Any,
            "Map" if first == Some("serde_json") => Ty::Map {
                key: Box::new(Ty::String { format: None }),
                values: Box::new(Ty::Any),
            },
            "Url" => string("uri"),
            "IpAddr" => Ty::String { format: None },
            "Ipv4Addr" => string("ipv4"),
            "Ipv6Addr" => string("ipv6"),
            _ => return None,
        })
    }

    /// Records a type that cannot be described and returns "any value".
    pub(crate) fn unresolved(
        &mut self,
        cx: &Ctx,
        field: &str,
        rust: &str,
        why: Option<&str>,
    ) -> Ty {
        let why = why.map(|w| format!(" ({w})")).unwrap_or_default();
        self.note(
            cx,
            field,
            format!("cannot resolve type `{rust}`{why}; the schema accepts any value there"),
            true,
        );
        Ty::Unresolved {
            rust: rust.to_owned(),
        }
    }
}
