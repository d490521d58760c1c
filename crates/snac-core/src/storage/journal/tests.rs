//! Tests of what the conformance suite cannot see: Optuna's replay rules on
//! lines other writers put in the file, refusals that keep our lines valid
//! for Optuna, and the file's own errors.

use super::*;
use serde_json::json;
use std::io::Write;

fn journal() -> (tempfile::TempDir, std::path::PathBuf, JournalStorage) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("study.log");
    let s = JournalStorage::open(&path).unwrap();
    (dir, path, s)
}

/// Appends lines as another writer (Optuna) would.
fn append(path: &Path, lines: &[&str]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

#[test]
fn the_first_worker_to_pop_a_waiting_trial_owns_it() {
    let (_dir, path, s) = journal();
    append(
        &path,
        &[
            r#"{"op_code":0,"worker_id":"py-1","study_name":"s","directions":[1]}"#,
            r#"{"op_code":4,"worker_id":"py-1","study_id":0,"datetime_start":null,"state":4,"value":null,"values":null,"distributions":{},"params":{},"user_attrs":{},"system_attrs":{"fixed_params":{"n":2}},"intermediate_values":{}}"#,
            r#"{"op_code":6,"worker_id":"py-2","trial_id":0,"state":0,"values":null,"datetime_start":"2025-01-01T10:00:00.000001"}"#,
            r#"{"op_code":6,"worker_id":"py-3","trial_id":0,"state":0,"values":null,"datetime_start":"2025-01-01T10:00:05.000000"}"#,
        ],
    );
    let t = s.get_trial(0).unwrap();
    assert_eq!(t.state, TrialState::Running);
    assert_eq!(ops::format_time(&t.datetime_start.unwrap()), "2025-01-01T10:00:00.000001", "the first pop won");
    assert_eq!(t.system_attrs["fixed_params"], json!({"n": 2}));
    // Finished by one; a late finish by the other is ignored, as are its attributes.
    append(
        &path,
        &[
            r#"{"op_code":6,"worker_id":"py-2","trial_id":0,"state":1,"values":[2.5],"datetime_complete":"2025-01-01T10:01:00.000000"}"#,
            r#"{"op_code":8,"worker_id":"py-3","trial_id":0,"user_attr":{"late":true}}"#,
            r#"{"op_code":6,"worker_id":"py-3","trial_id":0,"state":1,"values":[9.0],"datetime_complete":"2025-01-01T10:02:00.000000"}"#,
        ],
    );
    let t = s.get_trial(0).unwrap();
    assert_eq!((t.state, t.values.clone()), (TrialState::Complete, Some(vec![2.5])));
    assert!(t.user_attrs.is_empty());
    assert!(!s.finish_trial(0, TrialState::Complete, Some(&[1.0])).unwrap(), "compare-and-set sees it finished");
}

#[test]
fn ids_follow_optunas_replay() {
    let (_dir, path, s) = journal();
    append(
        &path,
        &[
            r#"{"op_code":0,"worker_id":"a","study_name":"s","directions":[1]}"#,
            r#"{"op_code":0,"worker_id":"b","study_name":"s","directions":[2]}"#,
            r#"{"op_code":4,"worker_id":"a","study_id":0,"datetime_start":"2025-01-01T10:00:00.000000"}"#,
            r#"{"op_code":1,"worker_id":"a","study_id":0}"#,
            r#"{"op_code":4,"worker_id":"a","study_id":0,"datetime_start":"2025-01-01T10:00:00.000000"}"#,
            r#"{"op_code":0,"worker_id":"a","study_name":"s","directions":[2]}"#,
        ],
    );
    // The second "s" was ignored (name in use); the deleted study's id is not
    // reused, nor its trial's id; a trial of a deleted study is not made.
    let st = s.load_study("s").unwrap().unwrap();
    assert_eq!((st.id, st.directions.as_slice()), (1, [Direction::Maximize].as_slice()));
    assert_eq!(s.create_trial(st.id).unwrap(), (1, 0));
    assert!(s.get_trial(0).is_err(), "its study is gone");
    assert_eq!(s.list_studies().unwrap(), [st]);
}

#[test]
fn incompatible_parameters_are_ignored_on_replay_and_refused_here() {
    let (_dir, path, s) = journal();
    let st = s.create_or_load_study("s", &[Direction::Minimize]).unwrap();
    let (a, _) = s.create_trial(st.id).unwrap();
    let (b, _) = s.create_trial(st.id).unwrap();
    let relu = Distribution::Categorical { choices: vec![json!("relu"), json!("tanh")] };
    s.set_trial_param(a, "act", 1.0, &relu).unwrap();
    // Optuna: "CategoricalDistribution does not support dynamic value space".
    let other = Distribution::Categorical { choices: vec![json!("relu"), json!("gelu")] };
    let e = format!("{:#}", s.set_trial_param(b, "act", 0.0, &other).unwrap_err());
    assert!(e.contains("'act'") && e.contains("gelu") && e.contains("not compatible"), "{e}");
    let e =
        format!("{:#}", s.set_trial_param(b, "act", 0.0, &Distribution::Int { low: 0, high: 1, step: 1 }).unwrap_err());
    assert!(e.contains("not compatible"), "{e}");
    // Another writer's incompatible line is ignored, as Optuna ignores it.
    let line = ops::param_line("py", b, "act", 0.0, &other);
    append(&path, &[&line]);
    assert!(s.get_trial(b).unwrap().params.is_empty());
    // A float range may change; the log flag may not.
    let lr = |low: f64, log: bool| Distribution::Float { low, high: 1.0, log };
    s.set_trial_param(a, "lr", 0.5, &lr(0.1, false)).unwrap();
    s.set_trial_param(b, "lr", 0.5, &lr(0.01, false)).unwrap();
    assert!(s.set_trial_param(b, "lr2", 0.5, &lr(0.01, true)).is_ok());
    let (c, _) = s.create_trial(st.id).unwrap();
    assert!(s.set_trial_param(c, "lr", 0.5, &lr(0.1, true)).is_err());
    assert_eq!(s.get_trial(c).unwrap().params.len(), 0, "nothing of a refused batch is written");
}

#[test]
fn heartbeats_are_lines_but_not_attributes() {
    let (_dir, path, s) = journal();
    let st = s.create_or_load_study("s", &[Direction::Minimize]).unwrap();
    let (id, _) = s.create_trial(st.id).unwrap();
    s.record_heartbeat(id).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.lines().last().unwrap().contains(r#""system_attr":{"snac:heartbeat":""#), "{text}");
    assert!(s.get_trial(id).unwrap().system_attrs.is_empty());
    s.finish_trial(id, TrialState::Complete, Some(&[1.0])).unwrap();
    let lines = std::fs::read_to_string(&path).unwrap().lines().count();
    s.record_heartbeat(id).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), lines, "no heartbeat for a finished trial");
}

#[test]
fn a_broken_line_is_named_and_stays_an_error() {
    let (_dir, path, s) = journal();
    s.create_or_load_study("s", &[Direction::Minimize]).unwrap();
    append(
        &path,
        &[r#"{"op_code":4,"worker_id":"a","study_id":0,"datetime_start":"2025-01-01T10:00:00"}"#, "{not json"],
    );
    for _ in 0..2 {
        let e = format!("{:#}", s.load_study("s").unwrap_err());
        assert!(e.contains(&path.display().to_string()) && e.contains("line 3") && e.contains("{not json"), "{e}");
    }
    let e = format!("{:#}", JournalStorage::open(&path).err().unwrap());
    assert!(e.contains("line 3"), "{e}");
}

#[test]
fn worker_ids_look_like_optunas() {
    let (_dir, path, s) = journal();
    s.create_or_load_study("s", &[Direction::Minimize]).unwrap();
    let line: Value = serde_json::from_str(std::fs::read_to_string(&path).unwrap().lines().next().unwrap()).unwrap();
    let id = line["worker_id"].as_str().unwrap();
    let (uuid, pid) = id.rsplit_once('-').unwrap();
    assert_eq!(pid, std::process::id().to_string());
    assert_eq!(uuid.len(), 36);
    assert_eq!(uuid.as_bytes()[14], b'4');
    assert_ne!(random_uuid(), random_uuid());
}
