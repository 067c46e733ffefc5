//! `docs/configuration.md` is the one list of the services' environment variables, so it must not
//! drift from the code: every variable a service's command line (clap) accepts is documented
//! there, and every variable documented there is accepted by some service. A documented variable
//! is a `` `NAME` `` in the first cell of a table row; other names in the page (`make run`'s, the
//! tests', `RUST_LOG`) sit outside the tables' first column and are not checked.
//!
//! Needs no servers.

use std::collections::{BTreeMap, BTreeSet};

const DOC: &str = "docs/configuration.md";

/// Every variable each service accepts, with the services that accept it.
fn accepted() -> BTreeMap<String, BTreeSet<&'static str>> {
    let commands = [
        ("ingest", <ingest::config::Config as clap::CommandFactory>::command()),
        ("aggregator", <aggregator::config::Config as clap::CommandFactory>::command()),
        ("query", <query::config::Config as clap::CommandFactory>::command()),
    ];
    let mut variables = BTreeMap::new();
    for (service, command) in &commands {
        collect(command, service, &mut variables);
    }
    variables
}

/// The variables of `command`'s arguments and of its subcommands', recursively.
fn collect(command: &clap::Command, service: &'static str, into: &mut BTreeMap<String, BTreeSet<&'static str>>) {
    for argument in command.get_arguments() {
        if let Some(variable) = argument.get_env() {
            into.entry(variable.to_string_lossy().into_owned()).or_default().insert(service);
        }
    }
    for subcommand in command.get_subcommands() {
        collect(subcommand, service, into);
    }
}

/// What the first cell of each table row of `doc` names: `` `NAME` `` spans, each with its line
/// number. Rows inside fenced code blocks, header cells without backticks and separator rows
/// name nothing.
fn first_column_names(doc: &str) -> Vec<(usize, String)> {
    let mut names = Vec::new();
    let mut in_code = false;
    for (index, line) in doc.lines().enumerate() {
        let line = line.trim();
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code || !line.starts_with('|') {
            continue;
        }
        let Some(cell) = line.split('|').nth(1) else { continue };
        // Between backticks: the odd-numbered pieces of the cell split at each backtick.
        for span in cell.split('`').skip(1).step_by(2) {
            names.push((index + 1, span.trim().to_owned()));
        }
    }
    names
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn read_doc() -> String {
    let path = e2e::workspace_root().join(DOC);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn the_services_accept_the_variables_this_test_expects_to_find() {
    // A guard for the test itself: were clap's API to stop reporting variables, the checks
    // below would pass on an empty list.
    let accepted = accepted();
    for (variable, services) in [
        ("NATS_URL", &["aggregator", "ingest", "query"][..]),
        ("INGEST_ADDR", &["ingest"][..]),
        ("STREAM_MAX_AGE_SECS", &["aggregator"][..]),
        ("API_KEY", &["query"][..]),
    ] {
        let found: Vec<&str> = accepted.get(variable).map(|s| s.iter().copied().collect()).unwrap_or_default();
        assert_eq!(found, services, "{variable}: accepted by {found:?}, expected {services:?}");
    }
    assert!(accepted.len() >= 60, "only {} variables found in the services' command lines", accepted.len());
}

#[test]
fn every_variable_a_service_accepts_is_documented() {
    let documented: BTreeSet<String> = first_column_names(&read_doc()).into_iter().map(|(_, name)| name).collect();
    let missing: Vec<String> = accepted()
        .into_iter()
        .filter(|(variable, _)| !documented.contains(variable))
        .map(|(variable, services)| {
            format!("  `{variable}` (read by {})", services.into_iter().collect::<Vec<_>>().join(", "))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{DOC} does not document {} variable(s) the services accept; add a table row whose first cell names each:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[test]
fn every_documented_variable_is_accepted_by_a_service() {
    let accepted = accepted();
    let names = first_column_names(&read_doc());
    assert!(names.len() >= 60, "{DOC}: only {} names in the first column of its tables", names.len());
    let mut problems = Vec::new();
    for (line, name) in names {
        if !is_variable_name(&name) {
            problems.push(format!(
                "  line {line}: `{name}` is not a variable name (the first column names variables only)"
            ));
        } else if !accepted.contains_key(&name) {
            problems.push(format!("  line {line}: `{name}` is accepted by no service (renamed or removed?)"));
        }
    }
    assert!(
        problems.is_empty(),
        "{DOC} documents {} name(s) no service accepts; remove them, or move names that are not the services' \
         (make run's, the tests') out of the tables' first column:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn first_cells_are_read_with_every_name_they_hold() {
    let doc = "| variable | default |\n|---|---|\n| `A_B`, `C` | `x` |\n```\n| `IN_CODE` | |\n```\n| `D1` |\n";
    let names: Vec<String> = first_column_names(doc).into_iter().map(|(_, name)| name).collect();
    assert_eq!(names, ["A_B", "C", "D1"]);
    assert!(is_variable_name("MAX_BATCH_EVENTS") && !is_variable_name("make run") && !is_variable_name("lower_case"));
}
