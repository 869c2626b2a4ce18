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

/// Edit distance counting an insertion, a deletion, a substitution or a swap of two neighbouring
/// characters as one edit (optimal string alignment), so that `kye` is one typo away from `key`.
fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows of the distance table: two rows back (for swaps), the previous one, the current.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            current[j] = best;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
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
        assert_eq!(did_you_mean("kye", &["key", "dedupe"]), Some("key"));
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("verison", "version"), 1);
        assert_eq!(levenshtein("", "key"), 3);
        assert_eq!(levenshtein("key", ""), 3);
    }
}
