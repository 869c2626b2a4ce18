//! Reading the crate: from the root files, follow `mod x;` to files the way rustc does
//! (`x.rs`, `x/mod.rs`, `#[path]`), and keep every item the scan needs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use event_model::Kind;
use syn::punctuated::Punctuated;

use crate::error::{Diagnostic, Error, ErrorKind, Location};

/// One file that was read.
pub(crate) struct SourceFile {
    /// As opened.
    pub(crate) path: PathBuf,
    /// Relative to the crate directory when inside it, for messages and the model.
    pub(crate) display: PathBuf,
}

/// One module (a file or an inline `mod x { ... }`).
pub(crate) struct Module {
    /// Its path from the crate root (`[]` for the root).
    pub(crate) path: Vec<String>,
    /// The file it is written in.
    pub(crate) file: usize,
    /// `use a::b::C;` and `use a::b::C as D;`: local name -> path as written.
    pub(crate) uses: BTreeMap<String, Vec<String>>,
    /// `use a::b::*;`: the paths as written.
    pub(crate) globs: Vec<Vec<String>>,
    /// The names of its child modules.
    pub(crate) children: BTreeSet<String>,
}

/// A struct or enum.
pub(crate) struct TypeItem {
    pub(crate) module: usize,
    pub(crate) input: syn::DeriveInput,
    /// `#[derive(DomainEvent)]` or `#[derive(Command)]`.
    pub(crate) kind: Option<Kind>,
}

/// `type X = Y;`
pub(crate) struct AliasItem {
    pub(crate) module: usize,
    pub(crate) ident: String,
    pub(crate) ty: syn::Type,
    pub(crate) generic: bool,
}

/// A function whose body may publish or send, and which may be a handler.
pub(crate) enum FnItem {
    /// `fn f() {}` at module level.
    Free { module: usize, item: syn::ItemFn },
    /// `impl T { fn f() {} }`.
    Method {
        module: usize,
        self_ty: Vec<String>,
        item: syn::ImplItemFn,
    },
}

/// An `impl` block under `#[saga(...)]`.
pub(crate) struct SagaItem {
    pub(crate) module: usize,
    /// The attribute's arguments.
    pub(crate) args: proc_macro2::TokenStream,
    /// The attribute, for locations.
    pub(crate) attr_span: proc_macro2::Span,
    pub(crate) item: syn::ItemImpl,
}

/// Everything read, in the order read.
#[derive(Default)]
pub(crate) struct Loaded {
    pub(crate) files: Vec<SourceFile>,
    pub(crate) modules: Vec<Module>,
    pub(crate) types: Vec<TypeItem>,
    pub(crate) aliases: Vec<AliasItem>,
    pub(crate) fns: Vec<FnItem>,
    pub(crate) sagas: Vec<SagaItem>,
    pub(crate) errors: Vec<Diagnostic>,
    pub(crate) warnings: Vec<Diagnostic>,
}

pub(crate) struct Loader {
    crate_dir: PathBuf,
    seen: BTreeSet<PathBuf>,
    pub(crate) out: Loaded,
}

/// Where the items of a module are, and where its out-of-line children live.
#[derive(Clone)]
struct Place {
    module_path: Vec<String>,
    file: usize,
    /// Directory of `mod x;` children (`x.rs`, `x/mod.rs`).
    child_dir: PathBuf,
    /// Directory a `#[path]` on a child is relative to.
    path_base: PathBuf,
}

impl Loader {
    pub(crate) fn new(crate_dir: &Path) -> Loader {
        Loader {
            crate_dir: crate_dir.to_path_buf(),
            seen: BTreeSet::new(),
            out: Loaded::default(),
        }
    }

    /// Reads a root file (`src/lib.rs`, or one given to `Config::sources`) as the crate root.
    pub(crate) fn load_root(&mut self, path: &Path) -> Result<(), Error> {
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let mod_rs = matches!(
            path.file_name().and_then(|n| n.to_str()),
            Some("lib.rs" | "main.rs" | "mod.rs")
        );
        let child_dir = if mod_rs {
            dir.clone()
        } else {
            dir.join(path.file_stem().unwrap_or_default())
        };
        if !path.is_file() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "source file not found"),
            ));
        }
        self.load_file(path, Vec::new(), child_dir, dir)
    }

    fn load_file(
        &mut self,
        path: &Path,
        module_path: Vec<String>,
        child_dir: PathBuf,
        path_base: PathBuf,
    ) -> Result<(), Error> {
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if !self.seen.insert(key) {
            return Ok(());
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let display = path
            .strip_prefix(&self.crate_dir)
            .unwrap_or(path)
            .to_path_buf();
        let file = syn::parse_file(&text).map_err(|e| {
            Error::new(ErrorKind::Parse, Some(path.to_path_buf()))
                .with_diagnostics(Diagnostic::from_syn(&display, e))
        })?;
        let index = self.out.files.len();
        self.out.files.push(SourceFile {
            path: path.to_path_buf(),
            display,
        });
        let place = Place {
            module_path,
            file: index,
            child_dir,
            path_base,
        };
        self.walk(file.items, place)
    }

    fn walk(&mut self, items: Vec<syn::Item>, place: Place) -> Result<(), Error> {
        let module = self.out.modules.len();
        self.out.modules.push(Module {
            path: place.module_path.clone(),
            file: place.file,
            uses: BTreeMap::new(),
            globs: Vec::new(),
            children: BTreeSet::new(),
        });
        let mut nested = Vec::new();
        for item in items {
            if is_cfg_test(item_attrs(&item)) {
                continue;
            }
            match item {
                syn::Item::Struct(item) => {
                    let kind = self.derive_kind(&item.attrs, place.file);
                    self.out.types.push(TypeItem {
                        module,
                        input: item.into(),
                        kind,
                    });
                }
                syn::Item::Enum(item) => {
                    let kind = self.derive_kind(&item.attrs, place.file);
                    self.out.types.push(TypeItem {
                        module,
                        input: item.into(),
                        kind,
                    });
                }
                syn::Item::Type(item) => self.out.aliases.push(AliasItem {
                    module,
                    ident: item.ident.to_string(),
                    generic: !item.generics.params.is_empty(),
                    ty: *item.ty,
                }),
                syn::Item::Use(item) => {
                    let m = &mut self.out.modules[module];
                    collect_use(&item.tree, &mut Vec::new(), &mut m.uses, &mut m.globs);
                }
                syn::Item::Fn(item) => self.out.fns.push(FnItem::Free { module, item }),
                syn::Item::Impl(item) => {
                    if let Some(attr) = item.attrs.iter().find(|a| is_saga_attr(a)) {
                        let args = match &attr.meta {
                            syn::Meta::List(list) => list.tokens.clone(),
                            _ => proc_macro2::TokenStream::new(),
                        };
                        self.out.sagas.push(SagaItem {
                            module,
                            args,
                            attr_span: syn::spanned::Spanned::span(attr),
                            item: item.clone(),
                        });
                    }
                    let self_ty = match &*item.self_ty {
                        syn::Type::Path(p) => p
                            .path
                            .segments
                            .iter()
                            .map(|s| s.ident.to_string())
                            .collect(),
                        _ => Vec::new(),
                    };
                    for impl_item in item.items {
                        if let syn::ImplItem::Fn(f) = impl_item
                            && !is_cfg_test(&f.attrs)
                        {
                            self.out.fns.push(FnItem::Method {
                                module,
                                self_ty: self_ty.clone(),
                                item: f,
                            });
                        }
                    }
                }
                syn::Item::Mod(item) => nested.push(item),
                _ => {}
            }
        }
        for item in nested {
            let name = item.ident.to_string();
            self.out.modules[module].children.insert(name.clone());
            let mut module_path = place.module_path.clone();
            module_path.push(name.clone());
            let path_attr = path_attribute(&item.attrs);
            match item.content {
                Some((_, items)) => {
                    let dir = match &path_attr {
                        Some(p) => place.path_base.join(p),
                        None => place.child_dir.join(&name),
                    };
                    self.walk(
                        items,
                        Place {
                            module_path,
                            file: place.file,
                            child_dir: dir.clone(),
                            path_base: dir,
                        },
                    )?;
                }
                None => {
                    let found = match &path_attr {
                        Some(p) => {
                            let file = place.path_base.join(p);
                            let dir = file.parent().unwrap_or(Path::new("")).to_path_buf();
                            file.is_file().then(|| (file, dir.clone(), dir))
                        }
                        None => {
                            let flat = place.child_dir.join(format!("{name}.rs"));
                            let nested = place.child_dir.join(&name).join("mod.rs");
                            if flat.is_file() {
                                let dir = place.child_dir.join(&name);
                                Some((flat, dir, place.child_dir.clone()))
                            } else if nested.is_file() {
                                let dir = place.child_dir.join(&name);
                                Some((nested, dir.clone(), dir))
                            } else {
                                None
                            }
                        }
                    };
                    match found {
                        Some((file, child_dir, path_base)) => {
                            self.load_file(&file, module_path, child_dir, path_base)?;
                        }
                        None => {
                            let location = Location::from_span(
                                &self.out.files[place.file].display,
                                item.ident.span(),
                            );
                            // Possibly behind a `cfg` that is off: rustc decides; we say so.
                            self.out.warnings.push(Diagnostic::new(
                                location,
                                format!(
                                    "no file for `mod {name};` (looked for {name}.rs and {name}/mod.rs in {}); its types are not scanned",
                                    place.child_dir.display()
                                ),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn derive_kind(&mut self, attrs: &[syn::Attribute], file: usize) -> Option<Kind> {
        let mut kinds = Vec::new();
        for attr in attrs.iter().filter(|a| a.path().is_ident("derive")) {
            let Ok(paths) =
                attr.parse_args_with(Punctuated::<syn::Path, syn::Token![,]>::parse_terminated)
            else {
                continue;
            };
            for path in paths {
                match path.segments.last().map(|s| s.ident.to_string()).as_deref() {
                    Some("DomainEvent") => kinds.push((Kind::Event, path)),
                    Some("Command") => kinds.push((Kind::Command, path)),
                    _ => {}
                }
            }
        }
        if kinds.len() > 1 {
            let location = Location::from_span(
                &self.out.files[file].display,
                syn::spanned::Spanned::span(&kinds[1].1),
            );
            self.out.errors.push(Diagnostic::new(
                location,
                "a type cannot derive both DomainEvent and Command: an event is a fact, a command a request",
            ));
        }
        kinds.first().map(|(kind, _)| *kind)
    }
}

fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    match item {
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Mod(i) => &i.attrs,
        _ => &[],
    }
}

/// `#[saga(...)]` (or `#[event_runtime::saga(...)]`).
fn is_saga_attr(attr: &syn::Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == "saga")
}

/// `#[cfg(test)]`: test-only items are not part of the crate's contracts.
pub(crate) fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && matches!(&a.meta, syn::Meta::List(list) if list.tokens.to_string() == "test")
    })
}

fn path_attribute(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| match &a.meta {
        syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

fn collect_use(
    tree: &syn::UseTree,
    prefix: &mut Vec<String>,
    uses: &mut BTreeMap<String, Vec<String>>,
    globs: &mut Vec<Vec<String>>,
) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            collect_use(&p.tree, prefix, uses, globs);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            if n.ident == "self" {
                if let Some(last) = prefix.last() {
                    uses.insert(last.clone(), prefix.clone());
                }
            } else {
                let mut path = prefix.clone();
                path.push(n.ident.to_string());
                uses.insert(n.ident.to_string(), path);
            }
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            if r.ident != "self" {
                path.push(r.ident.to_string());
            }
            if r.rename != "_" {
                uses.insert(r.rename.to_string(), path);
            }
        }
        syn::UseTree::Glob(_) => globs.push(prefix.clone()),
        syn::UseTree::Group(g) => {
            for tree in &g.items {
                collect_use(tree, prefix, uses, globs);
            }
        }
    }
}
