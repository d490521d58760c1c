//! `snac results`: the outputs of a study, written from its storage, so the
//! workers of a distributed search need no merge step.

use crate::cli::ResultsArgs;
use crate::outputs::completed;
use crate::outputs::{self, CsvLog};
use anyhow::{Context, Result, bail};
use serde_json::json;
use snac_core::storage;
use std::process::ExitCode;

pub fn results(args: &ResultsArgs) -> Result<ExitCode> {
    let experiment = super::load_experiment(&args.run)?;
    let Some(url) = experiment.search.storage.clone() else {
        bail!("snac results needs the study's storage: give --storage URL (or set search.storage in the config)");
    };
    let name = crate::setup::study_name(&experiment.search).to_string();
    let storage = storage::open(&url)?;
    let Some(study) = storage.load_study(&name)? else {
        let known: Vec<String> = storage.list_studies().unwrap_or_default().into_iter().map(|s| s.name).collect();
        bail!(
            "storage '{}' has no study '{name}' (it has: {}); give --study NAME",
            storage::redact_url(&url),
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        );
    };
    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut trials = storage.get_all_trials(study.id)?;
    let mut yamls = 0;
    for trial in trials.iter_mut() {
        if trial.state != snac_core::search::TrialState::Complete {
            continue;
        }
        if let Some(yaml) = outputs::stored_trial_yaml(trial)? {
            let path = outputs::trial_yaml_path(out, trial.number);
            yaml.write(&path)?;
            trial.user_attrs.insert("yaml_path".into(), json!(path.to_string_lossy()));
            yamls += 1;
        }
    }
    let csv = out.join(outputs::csv_name(experiment.search.model_type));
    CsvLog::write_new(csv.clone(), &experiment, &trials)?;
    let best = outputs::best_by_accuracy(&trials);
    if let Some(best) = &best {
        outputs::write_best_model(out, best)?;
    }
    let finished = trials.iter().filter(|t| t.state.is_finished()).count();
    println!(
        "study '{name}': {} trials ({finished} finished, {} complete); {yamls} trial YAMLs",
        trials.len(),
        completed(&trials).count()
    );
    println!("results: {}", csv.display());
    if best.is_some() {
        println!("best model: {}", out.join(outputs::BEST_MODEL_FILE).display());
    }
    Ok(ExitCode::SUCCESS)
}
