//! Text that people read: refuse characters that change how it looks.
//!
//! Emails, ids, names and notes are printed in tables, the Transaction
//! Manager's BY column and audit histories. A right-to-left override
//! (U+202E) or a zero-width space (U+200B) makes one address look like
//! another, so they — and control characters — are refused at the edge,
//! before anything is written (DESIGN.md §2, "Who is acting").

/// Whether `c` is a control, bidirectional-formatting or invisible
/// (zero-width) character that can spoof what a reader sees.
pub fn is_spoofing_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'              // soft hyphen
            | '\u{034F}'            // combining grapheme joiner
            | '\u{061C}'            // Arabic letter mark
            | '\u{115F}' | '\u{1160}' // Hangul fillers
            | '\u{17B4}' | '\u{17B5}'
            | '\u{180E}'            // Mongolian vowel separator
            | '\u{200B}'..='\u{200F}' // zero-width space/joiners, LRM, RLM
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{206A}'..='\u{206F}' // deprecated formatting
            | '\u{3164}'            // Hangul filler
            | '\u{FEFF}'            // zero-width no-break space (BOM)
            | '\u{FFA0}'            // halfwidth Hangul filler
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotation
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E007F}' // tags
        )
}

/// The first spoofing character of `value`, written as `U+XXXX`, if any.
pub fn find_spoofing_char(value: &str) -> Option<String> {
    value
        .chars()
        .find(|c| is_spoofing_char(*c))
        .map(|c| format!("U+{:04X}", c as u32))
}

/// The reason to refuse `value`, if it holds a spoofing character.
pub fn spoofing_reason(value: &str) -> Option<String> {
    find_spoofing_char(value).map(|code| {
        format!(
            "it contains {code}, a control, bidirectional-override or invisible character that can disguise text; type it again without it"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bidi_overrides_and_zero_width_characters() {
        for c in [
            '\u{202E}', '\u{200B}', '\u{2066}', '\u{FEFF}', '\n', '\u{7}',
        ] {
            assert!(is_spoofing_char(c), "{c:?}");
        }
        for c in ['a', 'é', 'ü', '日', '-', '@', ' '] {
            assert!(!is_spoofing_char(c), "{c:?}");
        }
        assert_eq!(find_spoofing_char("ab\u{202E}c").as_deref(), Some("U+202E"));
    }
}
