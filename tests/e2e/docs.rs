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

#[test]
fn no_tracked_text_file_contains_merge_conflict_markers() {
    let root = env!("CARGO_MANIFEST_DIR");
    let listed = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .expect("git ls-files (the check needs the git checkout)");
    assert!(listed.status.success(), "git ls-files failed");
    // Built at run time so this file does not match itself.
    let starts = [
        "<".repeat(7) + " ",
        ">".repeat(7) + " ",
        "|".repeat(7) + " ",
    ];
    let mut found = Vec::new();
    let mut checked = 0;
    for path in listed.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let path = String::from_utf8_lossy(path);
        let Ok(bytes) = std::fs::read(format!("{root}/{path}")) else {
            continue; // deleted in the work tree but not yet in the index
        };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue; // binary
        };
        checked += 1;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            let marker = starts.iter().any(|m| line.starts_with(m.as_str()))
                || line == "=".repeat(7) && text.contains(&starts[0]);
            if marker {
                found.push(format!("{path}:{}: {line}", n + 1));
            }
        }
    }
    assert!(checked > 10, "only {checked} text files were checked");
    assert!(
        found.is_empty(),
        "unresolved merge-conflict markers:\n{}",
        found.join("\n")
    );
}
