//! "Did you mean" suggestions: the closest known name by edit distance.

/// The candidate closest to `name`, if one is close enough to be a typo
/// (Damerau-Levenshtein distance at most 2, or a third of the name's length).
#[must_use]
pub fn closest<'c>(name: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d <= limit && *d < c.chars().count())
        .min_by(|(d1, c1), (d2, c2)| {
            d1.cmp(d2).then(strsim::jaro_winkler(name, c2).total_cmp(&strsim::jaro_winkler(name, c1)))
        })
        .map(|(_, c)| c)
}

/// A help line: "did you mean `x`?" or the list of what is valid.
#[must_use]
pub fn help(name: &str, what: &str, candidates: &[&str]) -> Option<String> {
    if let Some(c) = closest(name, candidates.iter().copied()) {
        return Some(format!("did you mean `{c}`?"));
    }
    if candidates.is_empty() || candidates.len() > 24 {
        return None;
    }
    let list: Vec<String> = candidates.iter().map(|c| format!("`{c}`")).collect();
    Some(format!("{what}: {}", list.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_typos_only() {
        let names = ["gamma", "steps", "schedule", "seed"];
        let cases = [
            ("gama", Some("gamma")),
            ("stesp", Some("steps")),
            ("shedule", Some("schedule")),
            ("xyz", None),
            ("sed", Some("seed")),
        ];
        for (typo, want) in cases {
            assert_eq!(closest(typo, names), want, "{typo}");
        }
    }

    #[test]
    fn lists_candidates_when_nothing_is_close() {
        assert_eq!(help("zzz", "expected one of", &["eps", "v"]).unwrap(), "expected one of: `eps`, `v`");
        assert_eq!(help("ep", "expected one of", &["eps", "v"]).unwrap(), "did you mean `eps`?");
        assert_eq!(help("zzz", "expected one of", &[]), None);
    }
}
