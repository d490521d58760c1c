//! "Did you mean …?": the known name closest in spelling to one a user
//! wrote, for config keys, config values and command-line choices. Only
//! near misses count (a typo, a swapped or missing letter), so a key that is
//! simply not snac's gets no suggestion.

/// The candidate closest to `written`, compared without regard to case,
/// when it is near enough to be a likely typo: at most one edit (insert,
/// delete, substitute, or swap of neighbours) per three characters of the
/// shorter name, and at least one. Ties go to the earlier candidate; a
/// candidate equal to `written` is not a suggestion.
///
/// ```
/// use snac_core::suggest::closest;
/// assert_eq!(closest("n_trails", ["n_trials", "epochs"]), Some("n_trials"));
/// assert_eq!(closest("mpl", ["mlp", "block", "deepsets"]), Some("mlp"));
/// assert_eq!(closest("dummy", ["dataset", "search", "output"]), None);
/// ```
pub fn closest<'a>(written: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let written_lower = written.to_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let lower = candidate.to_lowercase();
        if lower == written_lower {
            continue;
        }
        let distance = strsim::osa_distance(&written_lower, &lower);
        let shorter = written_lower.chars().count().min(lower.chars().count());
        let allowed = (shorter / 3).max(1);
        if distance <= allowed && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// `" (did you mean 'x'?)"` for the closest candidate, or nothing: to append
/// to a message that names the bad value.
pub fn did_you_mean<'a>(written: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(written, candidates).map(|c| format!(" (did you mean '{c}'?)")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_suggested_and_far_ones_are_not() {
        let keys = ["n_trials", "epochs", "n_folds", "sampler", "model_type"];
        assert_eq!(closest("n_trails", keys), Some("n_trials"));
        assert_eq!(closest("epoch", keys), Some("epochs"));
        assert_eq!(closest("Sampler_", keys), Some("sampler"));
        assert_eq!(closest("modeltype", keys), Some("model_type"));
        assert_eq!(closest("learning_rate", keys), None);
        assert_eq!(closest("dummy", keys), None);
        // The exact name is no suggestion (it was rejected for another reason).
        assert_eq!(closest("epochs", keys), None);
        // The nearest wins over an earlier, farther one.
        assert_eq!(closest("nsga3", ["random", "nsga2"]), Some("nsga2"));
        assert_eq!(closest("lut_pc", ["lut", "lut_pct"]), Some("lut_pct"));
        assert_eq!(did_you_mean("zcu012", ["pynq-z2", "zcu102"]), " (did you mean 'zcu102'?)");
        assert_eq!(did_you_mean("cifar", ["mnist", "digits"]), "");
    }
}
