//! The close-code table in the README and openapi.yaml must match the code.

use herald::protocol::close::TABLE;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn readme_close_code_table_lists_every_code_herald_sends() {
    let readme = read("README.md");
    for c in TABLE {
        let reconnect = if c.reconnect { "yes" } else { "no" };
        let row = format!("| {} | {} | {} | {} |", c.code, c.name, reconnect, c.when);
        assert!(
            readme.contains(&row),
            "README.md lacks the close-code row:\n{row}"
        );
    }
}

#[test]
fn openapi_documents_every_close_code_herald_sends() {
    let spec = read("openapi.yaml");
    for c in TABLE {
        assert!(
            spec.contains(&c.code.to_string()) && spec.contains(c.name),
            "openapi.yaml does not document close code {} ({})",
            c.code,
            c.name
        );
    }
}
