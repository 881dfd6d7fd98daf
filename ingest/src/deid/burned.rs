//! Burned-in text: which of the words OCR read in a picture identify someone. A
//! banner writes a value as the header holds it, or split into words (an
//! institution's name), in another order (given name first), or as a date in the
//! modality's own format; and some of what identifies needs no header (a date, a
//! time, an ID-like number). So the words are grouped into lines as they stand on
//! the picture, each line is compared letters and digits only, and the words a match
//! covers are blacked out.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::ocr::Word;

/// What to look for in a picture, from the header, before it is changed.
#[derive(Debug, Default, Clone)]
pub struct Terms {
    /// Values letters and digits only, lower case: names (each part, and the whole
    /// in both orders), IDs, institution, station and department names, the dates
    /// of the patient and the study in the formats modalities print.
    terms: Vec<String>,
}

/// Person names whose parts and whole are looked for.
const NAMES: &[Tag] = &[
    tags::PATIENT_NAME,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::PERFORMING_PHYSICIAN_NAME,
    tags::OPERATORS_NAME,
    tags::NAME_OF_PHYSICIANS_READING_STUDY,
    tags::PHYSICIANS_OF_RECORD,
    tags::REQUESTING_PHYSICIAN,
    tags::OTHER_PATIENT_NAMES,
];

/// Values looked for whole (an institution's name as a phrase).
const VALUES: &[Tag] = &[
    tags::PATIENT_ID,
    Tag(0x0010, 0x1000), // Other Patient IDs (retired)
    tags::ACCESSION_NUMBER,
    tags::STUDY_ID,
    tags::INSTITUTION_NAME,
    tags::INSTITUTION_ADDRESS,
    tags::INSTITUTIONAL_DEPARTMENT_NAME,
    tags::STATION_NAME,
    tags::DEVICE_SERIAL_NUMBER,
    tags::PATIENT_ADDRESS,
    tags::PATIENT_TELEPHONE_NUMBERS,
];

/// Dates printed in banners.
const DATES: &[Tag] = &[tags::PATIENT_BIRTH_DATE, tags::STUDY_DATE, tags::SERIES_DATE, tags::ACQUISITION_DATE, tags::CONTENT_DATE];

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];

/// Letters and digits only, lower case.
pub fn norm(s: &str) -> String {
    s.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

impl Terms {
    /// The terms of `obj`'s header.
    pub fn gather(obj: &InMemDicomObject) -> Terms {
        let values = |t: Tag| -> Vec<String> {
            obj.element(t).ok().and_then(|e| e.to_multi_str().ok().map(|v| v.iter().map(|s| s.trim().to_string()).collect())).unwrap_or_default()
        };
        let mut terms = Vec::new();
        for &t in NAMES {
            for name in values(t) {
                let parts: Vec<String> = name.split(['^', ' ', ',']).map(norm).filter(|p| !p.is_empty()).collect();
                terms.extend(parts.iter().filter(|p| p.len() >= 3).cloned());
                if parts.len() >= 2 {
                    // Family^Given: printed "Given Family" as often as "Family Given".
                    terms.push(parts.concat());
                    terms.push(format!("{}{}", parts[1], parts[0]));
                }
            }
        }
        for &t in VALUES {
            terms.extend(values(t).iter().map(|v| norm(v)));
        }
        for &t in DATES {
            for d in values(t) {
                terms.extend(date_forms(&d));
            }
        }
        terms.retain(|t| t.len() >= 3 && !matches!(t.as_str(), "anonymized" | "anon" | "none" | "unknown"));
        terms.sort();
        terms.dedup();
        Terms { terms }
    }

    /// The words of `words` (one picture's) that identify someone, as boxes
    /// (x, y, width, height) with a margin.
    pub fn boxes(&self, words: &[Word]) -> Vec<(usize, usize, usize, usize)> {
        let mut hit = vec![false; words.len()];
        for line in lines(words) {
            // The line letters and digits only, each character's word beside it.
            let mut text = String::new();
            let mut owner = Vec::new();
            let mut starts = Vec::new();
            for &w in &line {
                let n = norm(&words[w].text);
                for (k, c) in n.chars().enumerate() {
                    text.push(c);
                    owner.push(w);
                    starts.push(k == 0);
                }
            }
            let ends: Vec<bool> = (0..owner.len()).map(|i| i + 1 == owner.len() || owner[i + 1] != owner[i]).collect();
            for term in &self.terms {
                let mut from = 0;
                while let Some(at) = text[from..].find(term.as_str()).map(|i| i + from) {
                    let end = at + term.len() - 1;
                    // Short values only as whole words: "204" is not in "2040".
                    if term.len() >= 5 || (starts[at] && ends[end]) {
                        for &w in &owner[at..=end] {
                            hit[w] = true;
                        }
                    }
                    from = at + 1;
                }
            }
            // Dates, times and IDs need no header; a date may be split over words.
            for (i, &w) in line.iter().enumerate() {
                if needs_no_header(&words[w].text) {
                    hit[w] = true;
                }
                if let Some(three) = line.get(i..i + 3) {
                    let joined = three.iter().map(|&k| words[k].text.trim_matches([',', '.'])).collect::<Vec<_>>().join("-");
                    if is_date(&joined) {
                        three.iter().for_each(|&k| hit[k] = true);
                    }
                }
            }
            // A long value misread by a letter is still that value.
            for &w in &line {
                let n = norm(&words[w].text);
                if n.len() >= 6 && self.terms.iter().any(|t| t.len() >= 6 && within_one_edit(&n, t)) {
                    hit[w] = true;
                }
            }
        }
        let mut b: Vec<_> = words
            .iter()
            .zip(hit)
            .filter(|(_, h)| *h)
            .map(|(w, _)| (w.x.saturating_sub(3), w.y.saturating_sub(3), w.w + 6, w.h + 6))
            .collect();
        b.sort_unstable();
        b.dedup();
        b
    }
}

/// A date in the forms modalities print it, letters and digits only: 20240131,
/// 31012024, 01312024, 240131, 310124, 013124, 31jan2024, 31jan24, jan312024.
fn date_forms(da: &str) -> Vec<String> {
    let d: String = da.chars().filter(char::is_ascii_digit).collect();
    if d.len() != 8 {
        return Vec::new();
    }
    let (y, m, day) = (&d[0..4], &d[4..6], &d[6..8]);
    let yy = &y[2..];
    let mut forms = vec![d.clone(), format!("{day}{m}{y}"), format!("{m}{day}{y}"), format!("{yy}{m}{day}"), format!("{day}{m}{yy}"), format!("{m}{day}{yy}")];
    if let Some(mon) = m.parse::<usize>().ok().and_then(|i| MONTHS.get(i.wrapping_sub(1))) {
        let day1 = day.trim_start_matches('0');
        for dd in [day, day1] {
            forms.extend([format!("{dd}{mon}{y}"), format!("{dd}{mon}{yy}"), format!("{mon}{dd}{y}")]);
        }
    }
    forms
}

/// A word that identifies whatever the header says: a date, a time of day, or a
/// run of six digits or more (an ID, a date without separators).
fn needs_no_header(word: &str) -> bool {
    let w = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    is_date(w) || is_time(w) || {
        let mut run = 0;
        w.chars().any(|c| {
            run = if c.is_ascii_digit() { run + 1 } else if matches!(c, '-' | '/' | '.') && run > 0 { run } else { 0 };
            run >= 6
        })
    }
}

/// 12:30, 12:30:05, 9:05pm.
fn is_time(w: &str) -> bool {
    let w = w.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let parts: Vec<&str> = w.split(':').collect();
    (2..=3).contains(&parts.len())
        && parts[0].len() <= 2
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && parts[1..].iter().all(|p| p.len() == 2)
}

/// 31/01/2024, 2024-01-31, 01.31.24, 31-JAN-2024, JAN-31-2024.
fn is_date(w: &str) -> bool {
    let parts: Vec<&str> = w.split(['-', '/', '.']).collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return false;
    }
    let num = |p: &str, lens: std::ops::RangeInclusive<usize>| lens.contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit());
    let month = |p: &str| p.chars().all(|c| c.is_ascii_alphabetic()) && MONTHS.iter().any(|m| p.get(..3).is_some_and(|q| q.eq_ignore_ascii_case(m)));
    let (a, b, c) = (parts[0], parts[1], parts[2]);
    (num(a, 1..=2) && num(b, 1..=2) && (num(c, 2..=2) || num(c, 4..=4)))
        || (num(a, 4..=4) && num(b, 1..=2) && num(c, 1..=2))
        || (num(a, 1..=2) && month(b) && (num(c, 2..=2) || num(c, 4..=4)))
        || (month(a) && num(b, 1..=2) && (num(c, 2..=2) || num(c, 4..=4)))
}

/// Whether `a` and `b` differ by at most one letter put in, left out or changed.
fn within_one_edit(a: &str, b: &str) -> bool {
    let (a, b) = if a.len() <= b.len() { (a.as_bytes(), b.as_bytes()) } else { (b.as_bytes(), a.as_bytes()) };
    if b.len() - a.len() > 1 {
        return false;
    }
    let p = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    if p == a.len() {
        return true;
    }
    if a.len() == b.len() { a[p + 1..] == b[p + 1..] } else { a[p..] == b[p + 1..] }
}

/// Words grouped into lines as they stand on the picture (tesseract's sparse mode
/// does not say): words of one reading whose middles are level within half a
/// height, left to right, a gap of at most two heights between neighbours.
fn lines(words: &[Word]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..words.len()).collect();
    order.sort_by_key(|&i| (words[i].reading, words[i].y + words[i].h / 2, words[i].x));
    let mut lines: Vec<Vec<usize>> = Vec::new();
    for i in order {
        let w = &words[i];
        let mid = w.y + w.h / 2;
        let joined = lines.iter_mut().rev().take(4).find(|l| {
            let last = &words[*l.last().unwrap()];
            let lmid = last.y + last.h / 2;
            let h = last.h.max(w.h).max(1);
            last.reading == w.reading && lmid.abs_diff(mid) * 2 <= h && w.x + 1 >= last.x && w.x.saturating_sub(last.x + last.w) <= 2 * h
        });
        match joined {
            Some(l) => l.push(i),
            None => lines.push(vec![i]),
        }
    }
    for l in &mut lines {
        l.sort_by_key(|&i| words[i].x);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(text: &str, x: usize, y: usize) -> Word {
        Word { text: text.into(), x, y, w: 10 * text.len(), h: 12, reading: 0 }
    }

    fn terms(list: &[&str]) -> Terms {
        Terms { terms: list.iter().map(|t| norm(t)).collect() }
    }

    /// US1_UNCR.dcm's banner: the institution in three words, next to harmless ones.
    #[test]
    fn a_multi_word_institution_is_found_as_a_phrase() {
        let words = [word("BAPTIST", 20, 30), word("MED", 100, 30), word("CTR", 140, 30), word("LYMPH", 250, 360), word("NODE", 320, 360)];
        let t = terms(&["BAPTIST MED CTR"]);
        assert_eq!(t.boxes(&words).len(), 3);
        // Two readings of the same words (both polarities) are two lines.
        let twice: Vec<Word> = words.iter().cloned().chain(words.iter().map(|w| Word { reading: 1, ..w.clone() })).collect();
        assert_eq!(t.boxes(&twice).len(), 3);
        // The same words on different lines are not the phrase.
        let apart = [word("BAPTIST", 20, 30), word("MED", 100, 200), word("CTR", 140, 400)];
        assert_eq!(t.boxes(&apart).len(), 0);
    }

    #[test]
    fn names_in_either_order_short_ids_only_whole_and_misreads() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(dicom_core::DataElement::new(tags::PATIENT_NAME, dicom_core::VR::PN, dicom_core::value::PrimitiveValue::from("Doe^Jonathan")));
        obj.put(dicom_core::DataElement::new(tags::PATIENT_ID, dicom_core::VR::LO, dicom_core::value::PrimitiveValue::from("204")));
        obj.put(dicom_core::DataElement::new(tags::PATIENT_BIRTH_DATE, dicom_core::VR::DA, dicom_core::value::PrimitiveValue::from("19610412")));
        let t = Terms::gather(&obj);
        assert_eq!(t.boxes(&[word("JONATHAN", 0, 0), word("DOE", 90, 0)]).len(), 2);
        assert_eq!(t.boxes(&[word("ID:", 0, 0), word("204", 40, 0)]).len(), 1);
        assert_eq!(t.boxes(&[word("2040", 0, 0), word("x204y", 0, 50)]).len(), 0, "a short ID only as a word");
        assert_eq!(t.boxes(&[word("J0NATHAN", 0, 0)]).len(), 1, "one letter misread");
        assert_eq!(t.boxes(&[word("12-APR-61", 0, 0)]).len(), 1);
        assert_eq!(t.boxes(&[word("DOB", 0, 0), word("12", 50, 0), word("Apr", 80, 0), word("1961", 120, 0)]).len(), 3);
    }

    /// gdcm-US-ALOKA-16.dcm's banner: its header says nothing, its date and time do.
    #[test]
    fn dates_and_times_need_no_header() {
        let t = Terms::default();
        for w in ["24-MAY-02", "11:24:20", "05/12/2026", "2026-12-05", "12.05.26", "123456789"] {
            assert_eq!(t.boxes(&[word(w, 0, 0)]).len(), 1, "{w}");
        }
        for w in ["5.0", "R15", "G66", "94%", "3cm3cm", "0.4", "PWR", "12:3", "=—_", "1—2—3", "ü:é"] {
            assert_eq!(t.boxes(&[word(w, 0, 0)]).len(), 0, "{w}");
        }
    }

    #[test]
    fn one_edit() {
        assert!(within_one_edit("jonathan", "j0nathan"));
        assert!(within_one_edit("jonathan", "jonathn"));
        assert!(within_one_edit("jonathan", "jonathann"));
        assert!(!within_one_edit("jonathan", "j0nathn"));
    }
}
