//! Every folder under `tests/policies/invalid/` is a policy that must NOT compile. Its
//! `expect.txt` lists message substrings, one per line (`{dir}` is the case folder): each must
//! appear in some error, and every error must contain one of them (so a case cannot pass by
//! failing for an unrelated reason).

use std::path::Path;

use attestgate::policy::load_dir;

const CASES: &str = "tests/policies/invalid";

#[test]
fn every_invalid_policy_fails_with_its_message() {
    let mut dirs: Vec<_> = std::fs::read_dir(CASES)
        .expect("the fixtures folder")
        .map(|e| e.expect("a fixture entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 15, "only {} cases", dirs.len());
    let mut failures = Vec::new();
    for dir in &dirs {
        let case = dir.file_name().unwrap().to_string_lossy().to_string();
        let shown = format!("{CASES}/{case}");
        let expect = std::fs::read_to_string(dir.join("expect.txt"))
            .unwrap_or_else(|e| panic!("{case}: expect.txt: {e}"));
        let expected: Vec<String> = expect
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.replace("{dir}", &shown))
            .collect();
        assert!(!expected.is_empty(), "{case}: expect.txt is empty");
        let errors = match load_dir(Path::new(&shown)) {
            Ok(_) => {
                failures.push(format!("{case}: compiled, but must fail"));
                continue;
            }
            Err(errors) => errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        };
        for e in &expected {
            if !errors.iter().any(|got| got.contains(e.as_str())) {
                failures.push(format!(
                    "{case}: no error contains {e:?}; got:\n    {}",
                    errors.join("\n    ")
                ));
            }
        }
        for got in &errors {
            if !expected.iter().any(|e| got.contains(e.as_str())) {
                failures.push(format!("{case}: unexpected error {got:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn ambiguity_names_both_routes_as_file_and_id() {
    let errors = load_dir("tests/policies/invalid/ambiguous-same-shape").unwrap_err();
    let text = errors[0].to_string();
    assert!(
        text.contains("tests/policies/invalid/ambiguous-same-shape/a.toml#orders-a"),
        "{text}"
    );
    assert!(
        text.contains("tests/policies/invalid/ambiguous-same-shape/b.toml#orders-b"),
        "{text}"
    );
}

#[test]
fn a_missing_folder_is_an_error() {
    let errors = load_dir("tests/policies/no-such-folder").unwrap_err();
    assert!(errors[0]
        .to_string()
        .contains("cannot read the policy folder"));
}
