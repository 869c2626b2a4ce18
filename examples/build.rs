//! The quickstart's contracts, checked and published on every build: the JSON Schema and proto3
//! of each event version go to `schemas/` (committed; a breaking change fails this build with
//! the reason), and the catalog (JSON, Markdown, HTML site, AsyncAPI) to `target/catalog/`.

fn main() {
    event_build::Config::new()
        .sources(["src/bin/quickstart.rs"])
        .registry_dir("schemas")
        .catalog_dir("../target/catalog")
        .run_or_exit();
}
