//! Name resolution over the scanned modules: which struct, enum or alias a path names.
//!
//! It follows what rustc does closely enough for type names in event payloads: items of the
//! current module, `use` declarations (renames and globs of local modules), `crate::`, `self::`,
//! `super::`, child modules; a path that leads nowhere local is external (`uuid::Uuid`). As a
//! last resort a bare name that only one type of the crate has is taken to be that type (it was
//! probably re-exported), like cbindgen does.

use std::collections::BTreeMap;

use super::load::Loaded;

/// A struct/enum or an alias.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Item {
    Type(usize),
    Alias(usize),
}

/// What a path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Item(Item),
    /// Not in the crate: the full path as far as imports tell (`["uuid", "Uuid"]`).
    External(Vec<String>),
}

/// Names the standard prelude brings into every module.
const PRELUDE: &[&str] = &[
    "String", "Vec", "Option", "Box", "bool", "char", "str", "u8", "u16", "u32", "u64", "u128",
    "usize", "i8", "i16", "i32", "i64", "i128", "isize", "f32", "f64",
];

pub(crate) struct Index {
    pub(crate) loaded: Loaded,
    by_module: BTreeMap<(Vec<String>, String), Item>,
    by_ident: BTreeMap<String, Vec<Item>>,
    modules_by_path: BTreeMap<Vec<String>, Vec<usize>>,
}

impl Index {
    pub(crate) fn new(loaded: Loaded) -> Index {
        let mut by_module = BTreeMap::new();
        let mut by_ident: BTreeMap<String, Vec<Item>> = BTreeMap::new();
        let mut modules_by_path: BTreeMap<Vec<String>, Vec<usize>> = BTreeMap::new();
        for (i, module) in loaded.modules.iter().enumerate() {
            modules_by_path
                .entry(module.path.clone())
                .or_default()
                .push(i);
        }
        for (i, ty) in loaded.types.iter().enumerate() {
            let ident = ty.input.ident.to_string();
            let path = loaded.modules[ty.module].path.clone();
            by_module
                .entry((path, ident.clone()))
                .or_insert(Item::Type(i));
            by_ident.entry(ident).or_default().push(Item::Type(i));
        }
        for (i, alias) in loaded.aliases.iter().enumerate() {
            let path = loaded.modules[alias.module].path.clone();
            by_module
                .entry((path, alias.ident.clone()))
                .or_insert(Item::Alias(i));
            by_ident
                .entry(alias.ident.clone())
                .or_default()
                .push(Item::Alias(i));
        }
        Index {
            loaded,
            by_module,
            by_ident,
            modules_by_path,
        }
    }

    /// The path of a type from the crate root, with its name last.
    pub(crate) fn type_path(&self, ty: usize) -> Vec<String> {
        let item = &self.loaded.types[ty];
        let mut path = self.loaded.modules[item.module].path.clone();
        path.push(item.input.ident.to_string());
        path
    }

    /// `orders::Line`.
    pub(crate) fn type_path_string(&self, ty: usize) -> String {
        self.type_path(ty).join("::")
    }

    fn item_path(&self, item: Item) -> Vec<String> {
        match item {
            Item::Type(i) => self.type_path(i),
            Item::Alias(i) => {
                let alias = &self.loaded.aliases[i];
                let mut path = self.loaded.modules[alias.module].path.clone();
                path.push(alias.ident.clone());
                path
            }
        }
    }

    /// The full path of what `target` names.
    pub(crate) fn target_path(&self, target: &Target) -> Vec<String> {
        match target {
            Target::Item(item) => self.item_path(*item),
            Target::External(path) => path.clone(),
        }
    }

    /// What `segments`, written in `module`, names.
    pub(crate) fn resolve(&self, module: usize, segments: &[String]) -> Target {
        self.resolve_depth(module, segments, 0)
    }

    fn resolve_depth(&self, module: usize, segments: &[String], depth: u8) -> Target {
        let external = || Target::External(segments.to_vec());
        let Some(first) = segments.first() else {
            return external();
        };
        if depth > 16 {
            return external();
        }
        let here = &self.loaded.modules[module];
        match first.as_str() {
            "crate" => self.lookup(&[], &segments[1..], depth),
            "self" => self.lookup(&here.path, &segments[1..], depth),
            "super" => {
                let supers = segments.iter().take_while(|s| *s == "super").count();
                let keep = here.path.len().saturating_sub(supers);
                self.lookup(&here.path[..keep], &segments[supers..], depth)
            }
            _ if segments.len() == 1 => {
                if let Some(item) = self.by_module.get(&(here.path.clone(), first.clone())) {
                    return Target::Item(*item);
                }
                if let Some(path) = here.uses.get(first) {
                    return self.resolve_depth(module, path, depth + 1);
                }
                for glob in &here.globs {
                    if let Target::Item(item) = self.resolve_module_item(module, glob, first, depth)
                    {
                        return Target::Item(item);
                    }
                }
                if PRELUDE.contains(&first.as_str()) {
                    return external();
                }
                match self.by_ident.get(first).map(Vec::as_slice) {
                    Some([only]) => Target::Item(*only),
                    _ => external(),
                }
            }
            _ => {
                if let Some(path) = here.uses.get(first) {
                    let mut full = path.clone();
                    full.extend_from_slice(&segments[1..]);
                    return self.resolve_depth(module, &full, depth + 1);
                }
                if here.children.contains(first) {
                    return self.lookup(&here.path, segments, depth);
                }
                if self.modules_by_path.contains_key(&vec![first.clone()]) {
                    return self.lookup(&[], segments, depth);
                }
                external()
            }
        }
    }

    /// `name` inside the module that `module_path` (written in `from`) names.
    fn resolve_module_item(
        &self,
        from: usize,
        module_path: &[String],
        name: &str,
        depth: u8,
    ) -> Target {
        let mut path = module_path.to_vec();
        path.push(name.to_owned());
        match self.resolve_depth(from, &path, depth + 1) {
            Target::Item(item) => Target::Item(item),
            Target::External(_) => Target::External(path),
        }
    }

    /// `rest` (`[module.., Name]`) looked up from the module at `base`.
    fn lookup(&self, base: &[String], rest: &[String], depth: u8) -> Target {
        let mut full = base.to_vec();
        full.extend_from_slice(rest);
        let Some((name, modules)) = rest.split_last() else {
            return Target::External(full);
        };
        let mut module_path = base.to_vec();
        module_path.extend_from_slice(modules);
        if let Some(item) = self.by_module.get(&(module_path.clone(), name.clone())) {
            return Target::Item(*item);
        }
        // A re-export: `pub use inner::Name;` in that module.
        if let Some(candidates) = self.modules_by_path.get(&module_path) {
            for &m in candidates {
                if let Some(path) = self.loaded.modules[m].uses.get(name)
                    && let Target::Item(item) = self.resolve_depth(m, path, depth + 1)
                {
                    return Target::Item(item);
                }
                for glob in &self.loaded.modules[m].globs {
                    if let Target::Item(item) = self.resolve_module_item(m, glob, name, depth) {
                        return Target::Item(item);
                    }
                }
            }
        }
        match self.by_ident.get(name).map(Vec::as_slice) {
            Some([only]) => Target::Item(*only),
            _ => Target::External(full),
        }
    }
}
