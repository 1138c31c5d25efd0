//! The official OpenMetrics 1.0 parser test suite (prometheus/OpenMetrics
//! `tests/testdata/parsers`, 211 cases, Apache-2.0, copied unmodified to `tests/data/openmetrics`): every case
//! must be accepted by `validate_openmetrics` exactly when its `test.json` says
//! `"shouldParse": true`.

use std::fs;
use std::path::Path;

use trawl::parse::{Format, Parser, validate_openmetrics};

const SUITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/openmetrics/parsers");
const EXPECTED_CASES: usize = 211;

struct Case {
    name: String,
    input: Vec<u8>,
    should_parse: bool,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let dir = fs::read_dir(SUITE).unwrap_or_else(|e| panic!("cannot read {SUITE}: {e}"));
    for entry in dir {
        let path = entry.expect("directory entry").path();
        let json =
            fs::read_to_string(path.join("test.json")).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // test.json is `{"type":"text","file":"metrics","shouldParse":bool[,"comment":...]}`;
        // a substring check avoids a JSON dependency for one boolean.
        let compact: String = json.chars().filter(|c| !c.is_whitespace()).collect();
        let should_parse = if compact.contains("\"shouldParse\":true") {
            true
        } else if compact.contains("\"shouldParse\":false") {
            false
        } else {
            panic!("{}: no shouldParse in {json}", path.display());
        };
        assert!(compact.contains("\"file\":\"metrics\""), "{}: unexpected file", path.display());
        let input = fs::read(path.join("metrics")).expect("metrics file");
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string();
        out.push(Case { name, input, should_parse });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[test]
fn all_cases_match_should_parse() {
    assert!(Path::new(SUITE).is_dir(), "suite directory missing: {SUITE}");
    let cases = cases();
    assert!(
        cases.len() >= EXPECTED_CASES,
        "found only {} cases in {SUITE}, expected {EXPECTED_CASES}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let result = validate_openmetrics(&case.input);
        if result.is_ok() != case.should_parse {
            failures.push(match result {
                Ok(()) => format!("{}: accepted, should be rejected", case.name),
                Err(e) => format!("{}: rejected ({e}), should be accepted", case.name),
            });
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The scrape path is more lenient than the validator, but everything the suite accepts
/// must also scrape, and the pure syntax failures must fail on the scrape path too.
#[test]
fn scrape_parser_accepts_valid_cases_and_rejects_syntax_errors() {
    let syntax_cases = [
        "bad_blank_line",
        "bad_no_eof",
        "bad_text_after_eof_0",
        "bad_text_after_eof_1",
        "bad_invalid_labels_2",
        "bad_value_1",
        "bad_value_3",
        "bad_value_4",
        "bad_value_5",
        "bad_timestamp_4",
        "bad_exemplars_3",
        "bad_exemplar_timestamp_0",
        "bad_missing_or_wrong_quotes_on_label_value_2",
        "bad_help_2",
        "bad_type_7",
        "bad_unit_4",
    ];
    let mut failures = Vec::new();
    for case in cases() {
        let mut parser = Parser::new(&case.input, Format::OpenMetrics);
        let ok = loop {
            match parser.next_entry() {
                Ok(Some(_)) => {}
                Ok(None) => break true,
                Err(_) => break false,
            }
        };
        if case.should_parse && !ok {
            failures.push(format!("{}: valid case rejected by Parser", case.name));
        }
        if syntax_cases.contains(&case.name.as_str()) && ok {
            failures.push(format!("{}: syntax error accepted by Parser", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
