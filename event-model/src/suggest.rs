//! "Did you mean ...?" for misspelt attribute names.

/// The closest of `candidates` to `word`, if it is close enough to be a plausible typo.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|candidate| (levenshtein(word, candidate), *candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// Formats the standard suffix: `, did you mean `x`?` or nothing.
pub fn suffix(word: &str, candidates: &[&str]) -> String {
    match did_you_mean(word, candidates) {
        Some(hint) => format!(", did you mean `{hint}`?"),
        None => format!("; expected one of: {}", candidates.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_words_are_suggested_and_far_ones_are_not() {
        let known = ["name", "version", "context"];
        assert_eq!(did_you_mean("verison", &known), Some("version"));
        assert_eq!(did_you_mean("contxt", &known), Some("context"));
        assert_eq!(did_you_mean("colour", &known), None);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }
}
